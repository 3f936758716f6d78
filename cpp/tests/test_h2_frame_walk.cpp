// FrameWalk: every frame header of a received byte stream is reported once, in order, with its
// fields, however the stream is cut into reads.
#include <random>
#include <tuple>
#include <vector>

#include "client/h2_frame_walk.h"
#include "testing.h"

using namespace agentperf;

namespace {

using Header = std::tuple<uint8_t, uint8_t, int32_t, uint32_t>;

void append_frame(std::vector<uint8_t>& out, const Header& h, std::mt19937_64& rng) {
  const auto [type, flags, id, length] = h;
  const uint8_t reserved = rng() % 2 ? 0x80 : 0;  // the R bit is not part of the stream id
  const uint8_t head[9] = {static_cast<uint8_t>(length >> 16), static_cast<uint8_t>(length >> 8),
                           static_cast<uint8_t>(length),       type,
                           flags,                              static_cast<uint8_t>(reserved | (id >> 24)),
                           static_cast<uint8_t>(id >> 16),     static_cast<uint8_t>(id >> 8),
                           static_cast<uint8_t>(id)};
  out.insert(out.end(), head, head + 9);
  for (uint32_t i = 0; i < length; ++i) out.push_back(static_cast<uint8_t>(rng()));  // payload bytes look like anything
}

}  // namespace

TEST(frame_walk_reports_every_header_however_the_reads_are_cut) {
  std::mt19937_64 rng(17);
  for (int iter = 0; iter < 300; ++iter) {
    std::vector<Header> frames;
    std::vector<uint8_t> bytes;
    const int count = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < count; ++i) {
      const uint32_t length = rng() % 4 == 0 ? 0 : rng() % 8 == 0 ? 20000 + rng() % 50000 : rng() % 300;
      frames.emplace_back(static_cast<uint8_t>(rng() % 10), static_cast<uint8_t>(rng()),
                          static_cast<int32_t>(rng() % 3 == 0 ? 0 : rng() & 0x7fffffff), length);
      append_frame(bytes, frames.back(), rng);
    }
    FrameWalk walk;
    std::vector<Header> seen;
    const size_t max_read = 1 + rng() % (rng() % 2 ? 12 : 70000);  // often smaller than a header
    for (size_t pos = 0; pos < bytes.size();) {
      const size_t n = std::min<size_t>(rng() % (max_read + 1), bytes.size() - pos);  // empty reads too
      walk.feed(bytes.data() + pos, n, [&](uint8_t type, uint8_t flags, int32_t id, uint32_t length) {
        seen.emplace_back(type, flags, id, length);
      });
      pos += n;
    }
    CHECK_EQ(seen.size(), frames.size());
    if (seen != frames) {
      CHECK_MSG(false, "iteration " << iter << ": headers differ (reads of at most " << max_read << " bytes)");
      break;
    }
  }
}
