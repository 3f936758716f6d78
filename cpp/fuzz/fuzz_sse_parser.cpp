// libFuzzer target: the SSE parser (cpp/src/client/sse_parser.cpp) and its data inspector.
// Input: one byte choosing how the rest is cut (fuzz_split.h), then the body bytes. Checks that the
// events (and whether a partial event is left) are the same whether the body is fed whole or cut
// into pieces, and again after reset() on the same parser (its buffers reused).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "agentperf/sse_parser.h"
#include "fuzz_split.h"

namespace {

using agentperf::SseEvent;
using agentperf::SseParser;

// An event with its text copied (SseEvent::text points into the parser's buffers).
struct Seen {
  SseEvent ev;
  std::string text;
  bool operator==(const Seen& o) const {
    SseEvent a = ev, b = o.ev;
    a.text = b.text = {};
    return a == b && text == o.text;
  }
};

std::vector<Seen> feed_pieces(SseParser& p, const char* data, const std::vector<size_t>& sizes, bool* partial) {
  std::vector<Seen> out;
  auto collect = [&](const SseEvent& e) { out.push_back({e, std::string(e.text)}); };
  size_t off = 0;
  for (size_t s : sizes) {
    p.feed(data + off, s, collect);
    off += s;
  }
  *partial = p.has_partial();
  return out;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_sse_parser: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1) return 0;
  const char* data = reinterpret_cast<const char*>(bytes + 1);
  const size_t n = size - 1;
  (void)agentperf::inspect_sse_data(std::string_view(data, n));

  SseParser whole_parser;
  bool whole_partial = false;
  std::vector<Seen> whole = feed_pieces(whole_parser, data, {n}, &whole_partial);

  SseParser cut_parser;
  bool cut_partial = false;
  std::vector<Seen> cut = feed_pieces(cut_parser, data, agentperf_fuzz::piece_sizes(n, bytes[0]), &cut_partial);
  if (cut != whole || cut_partial != whole_partial) fail("cutting the input changed the events");

  whole_parser.reset();
  bool again_partial = false;
  std::vector<Seen> again = feed_pieces(whole_parser, data, {n}, &again_partial);
  if (again != whole || again_partial != whole_partial) fail("a reset parser read the input differently");
  return 0;
}
