// Tests of the incremental SSE parser (agentperf/sse_parser.h).
//
// Corpus: tests/data/sse/<name>.txt holds a raw (de-chunked) SSE response body, <name>.expected the
// hand-written event list, one line per event. Every body is fed whole, split in two at every byte
// offset, one byte at a time and in random pieces; each way must give exactly the expected events.
// Each piece is copied into its own heap buffer that is freed right after the feed, so a view kept
// into an earlier feed's bytes shows up under AddressSanitizer.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "agentperf/sse_parser.h"
#include "testing.h"

#ifndef AGENTPERF_TEST_DATA_DIR
#error "AGENTPERF_TEST_DATA_DIR must be defined (the tests/data directory)"
#endif

// ---- allocation counting ---------------------------------------------------------------------
// Weak replacements of the global operator new/delete that count allocations while enabled. They
// are weak so that another test file of the same binary may define its own; the allocation test
// then notices that its counter does not move and skips its checks.
namespace {
thread_local bool g_count_allocs = false;
thread_local long g_allocs = 0;
}  // namespace

__attribute__((weak)) void* operator new(size_t n) {
  if (g_count_allocs) ++g_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
__attribute__((weak)) void* operator new[](size_t n) {
  if (g_count_allocs) ++g_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
__attribute__((weak)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((weak)) void operator delete[](void* p) noexcept { std::free(p); }
__attribute__((weak)) void operator delete(void* p, size_t) noexcept { std::free(p); }
__attribute__((weak)) void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace {

using agentperf::inspect_sse_data;
using agentperf::SseEvent;
using agentperf::SseParser;

std::string format_event(const SseEvent& e) {
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "output=%d done=%d usage=%d error=%d malformed=%d prompt=%lld completion=%lld "
                "cached=%lld",
                e.has_output, e.done, e.has_usage, e.error, e.malformed,
                static_cast<long long>(e.usage.prompt_tokens),
                static_cast<long long>(e.usage.completion_tokens),
                static_cast<long long>(e.usage.cached_tokens));
  return buf;
}

std::string join_events(const std::vector<SseEvent>& evs) {
  std::string s;
  for (const auto& e : evs) s += "  " + format_event(e) + "\n";
  return s;
}

bool parse_expected_line(const std::string& line, SseEvent* e) {
  int out, done, usage, err, mal;
  long long p, c, k;
  if (std::sscanf(line.c_str(),
                  " output=%d done=%d usage=%d error=%d malformed=%d prompt=%lld completion=%lld "
                  "cached=%lld",
                  &out, &done, &usage, &err, &mal, &p, &c, &k) != 8) {
    return false;
  }
  e->has_output = out;
  e->done = done;
  e->has_usage = usage;
  e->error = err;
  e->malformed = mal;
  e->usage.prompt_tokens = p;
  e->usage.completion_tokens = c;
  e->usage.cached_tokens = k;
  return true;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct CorpusCase {
  std::string name;
  std::string body;
  std::vector<SseEvent> expected;
};

std::filesystem::path corpus_dir() { return std::filesystem::path(AGENTPERF_TEST_DATA_DIR) / "sse"; }

std::vector<CorpusCase> load_corpus() {
  std::vector<CorpusCase> cases;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(corpus_dir(), ec)) {
    if (entry.path().extension() != ".txt") continue;
    CorpusCase c;
    c.name = entry.path().stem().string();
    c.body = read_file(entry.path());
    auto exp_path = entry.path();
    exp_path.replace_extension(".expected");
    CHECK_MSG(std::filesystem::exists(exp_path), "missing " << exp_path);
    std::istringstream lines(read_file(exp_path));
    std::string line;
    while (std::getline(lines, line)) {
      if (line.empty() || line[0] == '#') continue;
      SseEvent e;
      CHECK_MSG(parse_expected_line(line, &e), c.name << ".expected: bad line: " << line);
      c.expected.push_back(e);
    }
    cases.push_back(std::move(c));
  }
  CHECK_MSG(!ec, "cannot list " << corpus_dir() << ": " << ec.message());
  std::sort(cases.begin(), cases.end(),
            [](const CorpusCase& a, const CorpusCase& b) { return a.name < b.name; });
  return cases;
}

// Bodies whose last event is cut off (no closing blank line): has_partial() is true at the end.
bool ends_cut(const std::string& name) { return name == "truncated_tail"; }

// Feeds `body` in pieces ending at `cuts` (ascending offsets; the end is implied), each piece from
// its own short-lived heap copy.
// Events come back with `text` cleared (its view dies with the piece); the texts are appended,
// one line per event, to `texts` when given.
std::vector<SseEvent> run_pieces(SseParser& parser, std::string_view body,
                                 const std::vector<size_t>& cuts, std::string* texts = nullptr) {
  std::vector<SseEvent> got;
  size_t start = 0;
  auto feed_piece = [&](size_t end) {
    const size_t n = end - start;
    std::unique_ptr<char[]> piece(new char[n ? n : 1]);
    if (n) std::memcpy(piece.get(), body.data() + start, n);
    parser.feed(piece.get(), n, [&](const SseEvent& e) {
      got.push_back(e);
      got.back().text = {};
      if (texts) texts->append(e.text).append("\n");
    });
    start = end;
  };
  for (size_t c : cuts) feed_piece(c);
  feed_piece(body.size());
  return got;
}

// Cut points after every blank line (LF LF): the body fed one event at a time.
std::vector<size_t> event_cuts(const std::string& body) {
  std::vector<size_t> cuts;
  for (size_t i = body.find("\n\n"); i != std::string::npos; i = body.find("\n\n", i + 2)) cuts.push_back(i + 2);
  return cuts;
}

void expect_events(const CorpusCase& c, const std::vector<SseEvent>& got, const std::string& how) {
  CHECK_MSG(got == c.expected, c.name << " (" << how << "): expected\n"
                                      << join_events(c.expected) << "got\n"
                                      << join_events(got));
}

}  // namespace

TEST(sse_corpus_present) {
  auto cases = load_corpus();
  CHECK_MSG(cases.size() >= 20, "only " << cases.size() << " corpus files in " << corpus_dir());
  for (const auto& c : cases) CHECK_MSG(!c.expected.empty(), c.name << ": no expected events");
}

TEST(sse_corpus_whole) {
  for (const auto& c : load_corpus()) {
    SseParser parser;
    expect_events(c, run_pieces(parser, c.body, {}), "whole");
    CHECK_MSG(parser.has_partial() == ends_cut(c.name), c.name << ": has_partial at end");
    // The same parser, reset, parses the body again identically.
    parser.reset();
    CHECK(!parser.has_partial());
    expect_events(c, run_pieces(parser, c.body, {}), "whole after reset");
  }
}

TEST(sse_corpus_split_at_every_offset) {
  for (const auto& c : load_corpus()) {
    for (size_t i = 0; i <= c.body.size(); ++i) {
      SseParser parser;
      auto got = run_pieces(parser, c.body, {i});
      if (got != c.expected) {
        expect_events(c, got, "split at " + std::to_string(i));
        break;  // one report per file is enough
      }
      if (parser.has_partial() != ends_cut(c.name)) {
        CHECK_MSG(false, c.name << ": has_partial at end, split at " << i);
        break;
      }
    }
  }
}

TEST(sse_corpus_byte_at_a_time) {
  for (const auto& c : load_corpus()) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < c.body.size(); ++i) cuts.push_back(i);
    SseParser parser;
    expect_events(c, run_pieces(parser, c.body, cuts), "byte at a time");
    CHECK_MSG(parser.has_partial() == ends_cut(c.name), c.name << ": has_partial at end");
  }
}

TEST(sse_corpus_random_pieces) {
  std::mt19937_64 rng(20240611);
  for (const auto& c : load_corpus()) {
    SseParser parser;  // reused (with reset) across rounds, as the engine reuses one per stream
    for (int round = 0; round < 200; ++round) {
      std::vector<size_t> cuts;
      size_t pos = 0;
      const size_t max_piece = 1 + rng() % 64;
      while (true) {
        pos += rng() % (max_piece + 1);  // zero-length pieces included
        if (pos >= c.body.size()) break;
        cuts.push_back(pos);
      }
      parser.reset();
      auto got = run_pieces(parser, c.body, cuts);
      if (got != c.expected) {
        expect_events(c, got, "random pieces, round " + std::to_string(round));
        break;
      }
    }
  }
}

TEST(sse_corpus_concatenated_streams_with_reset) {
  // One parser reused for every body in turn, reset between them, fed in 7-byte pieces.
  auto cases = load_corpus();
  SseParser parser;
  for (const auto& c : cases) {
    parser.reset();
    std::vector<size_t> cuts;
    for (size_t i = 7; i < c.body.size(); i += 7) cuts.push_back(i);
    expect_events(c, run_pieces(parser, c.body, cuts), "7-byte pieces after reset");
  }
}

// ---- parser behaviour -------------------------------------------------------------------------

namespace {
std::vector<SseEvent> feed_all(SseParser& p, std::string_view s) {
  std::vector<SseEvent> got;
  p.feed(s.data(), s.size(), [&](const SseEvent& e) { got.push_back(e); });
  return got;
}
}  // namespace

TEST(sse_crlf_split_across_feeds_and_empty_feeds) {
  SseParser p;
  CHECK(feed_all(p, "data: {\"text\":\"a\"}\r").empty());
  CHECK(p.has_partial());          // the event has no closing blank line yet
  CHECK(feed_all(p, "").empty());  // an empty feed keeps the pending CR
  CHECK(feed_all(p, "\n").empty());  // the LF of the CRLF: not a blank line
  auto ev = feed_all(p, "\r\n");
  CHECK_EQ(ev.size(), 1u);
  if (ev.size() == 1) CHECK(ev[0].has_output);
  CHECK(!p.has_partial());
  // CR then CR: the second is a blank line.
  ev = feed_all(p, "data: [DONE]\r");
  CHECK(ev.empty());
  ev = feed_all(p, "\r");
  CHECK_EQ(ev.size(), 1u);
  if (ev.size() == 1) CHECK(ev[0].done);
}

TEST(sse_has_partial) {
  SseParser p;
  CHECK(!p.has_partial());
  feed_all(p, ": comment only\n\n");
  CHECK(!p.has_partial());
  feed_all(p, "da");
  CHECK(p.has_partial());
  feed_all(p, "ta: [DONE]\n");
  CHECK(p.has_partial());  // the line is complete, the event is not
  CHECK_EQ(feed_all(p, "\n").size(), 1u);
  CHECK(!p.has_partial());
  feed_all(p, "event: error\n");
  CHECK(p.has_partial());
  CHECK(feed_all(p, "\n").empty());  // no data: no event, and the error type is forgotten
  CHECK(!p.has_partial());
  auto ev = feed_all(p, "data: {}\n\n");
  CHECK_EQ(ev.size(), 1u);
  if (ev.size() == 1) CHECK(!ev[0].error);
  feed_all(p, "data: {\"text\":\"x\"}\n");
  p.reset();
  CHECK(!p.has_partial());
  CHECK(feed_all(p, "\n").empty());  // the reset dropped the data line
}

TEST(sse_field_parsing) {
  SseParser p;
  // Only one space after the colon is dropped; a line without a colon is a field with empty value.
  auto ev = feed_all(p, "data:  [DONE]\n\ndata:[DONE]\n\ndata\n\n");
  CHECK_EQ(ev.size(), 3u);
  if (ev.size() == 3) {
    CHECK(ev[0].malformed);  // " [DONE]"
    CHECK(ev[1].done);
    CHECK(ev[2].malformed);  // ""
  }
  // "data" must be the whole field name.
  ev = feed_all(p, "database: {\"text\":\"x\"}\ndata : {}\n\n");
  CHECK(ev.empty());
  // event type is case-sensitive; `event: error` with other types overriding it.
  ev = feed_all(p, "event: Error\ndata: {}\n\nevent: error\ndata: [DONE]\n\n");
  CHECK_EQ(ev.size(), 2u);
  if (ev.size() == 2) {
    CHECK(!ev[0].error);
    CHECK(ev[1].error);
    CHECK(ev[1].done);
  }
}

TEST(sse_callback_may_reset) {
  SseParser p;
  int n = 0;
  std::string s = "data: {\"text\":\"a\"}\n\ndata: {\"text\":\"b\"}\n\ndata: [DONE]\n\n";
  p.feed(s.data(), s.size(), [&](const SseEvent&) {
    ++n;
    p.reset();
  });
  CHECK_EQ(n, 1);  // the rest of the feed was dropped
  CHECK(!p.has_partial());
  CHECK_EQ(feed_all(p, s).size(), 3u);
}

TEST(sse_long_line_across_many_feeds) {
  std::string content(100000, 'x');
  std::string s = "data: {\"choices\":[{\"delta\":{\"content\":\"" + content +
                  "\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r\n\r\n";
  SseParser p;
  std::vector<SseEvent> got;
  for (size_t i = 0; i < s.size(); i += 333) {
    size_t n = std::min<size_t>(333, s.size() - i);
    p.feed(s.data() + i, n, [&](const SseEvent& e) { got.push_back(e); });
  }
  CHECK_EQ(got.size(), 1u);
  if (got.size() == 1) {
    CHECK(got[0].has_output);
    CHECK(got[0].has_usage);
    CHECK_EQ(got[0].usage.completion_tokens, 2);
  }
}

TEST(sse_no_allocation_per_event) {
  const std::string body = read_file(corpus_dir() / "vllm_chat_usage.txt");
  const std::string multi = read_file(corpus_dir() / "multiline_data.txt");
  CHECK(!body.empty());
  // Is the counting operator new the one in use (see the top of this file)?
  g_allocs = 0;
  g_count_allocs = true;
  {
    int* volatile probe = new int(1);  // volatile: the pair cannot be elided
    delete probe;
  }
  g_count_allocs = false;
  if (g_allocs != 1) {
    std::cout << "  (sse_no_allocation_per_event: operator new is not counted here; skipped)\n";
    return;
  }
  SseParser p;
  int events = 0;
  auto count = [&](const SseEvent&) { ++events; };
  // Warm-up: the buffers grow to the longest line and event once.
  for (size_t i = 0; i < body.size(); ++i) p.feed(body.data() + i, 1, count);
  for (size_t i = 0; i < multi.size(); ++i) p.feed(multi.data() + i, 1, count);
  events = 0;
  g_allocs = 0;
  g_count_allocs = true;
  for (int round = 0; round < 50; ++round) {
    p.reset();
    p.feed(body.data(), body.size(), count);  // whole: every event in place
    p.reset();
    for (size_t i = 0; i < body.size(); i += 37) {  // pieces: partial lines reuse the buffers
      p.feed(body.data() + i, std::min<size_t>(37, body.size() - i), count);
    }
    p.reset();
    p.feed(multi.data(), multi.size(), count);  // multi-line events reuse the data buffer
  }
  g_count_allocs = false;
  CHECK_EQ(g_allocs, 0);
  CHECK_EQ(events, 50 * (8 + 8 + 5));
  // inspect_sse_data never allocates.
  g_allocs = 0;
  g_count_allocs = true;
  SseEvent e = inspect_sse_data(
      R"({"choices":[{"delta":{"content":"hi","tool_calls":[{"index":0}]}}],"usage":{"prompt_tokens":3}})");
  g_count_allocs = false;
  CHECK_EQ(g_allocs, 0);
  CHECK(e.has_output);
}

// ---- inspect_sse_data -------------------------------------------------------------------------

TEST(inspect_done_and_malformed) {
  CHECK(inspect_sse_data("[DONE]").done);
  CHECK(!inspect_sse_data("[DONE]").malformed);
  CHECK(inspect_sse_data(" [DONE]").malformed);
  CHECK(inspect_sse_data("[DONE]\n").malformed);
  CHECK(inspect_sse_data("").malformed);
  CHECK(inspect_sse_data("   ").malformed);
  CHECK(inspect_sse_data("null").malformed);
  CHECK(inspect_sse_data("[1,2]").malformed);
  CHECK(inspect_sse_data("\"content\"").malformed);
  CHECK(!inspect_sse_data(" \t\r\n{}").malformed);
  CHECK(inspect_sse_data("{}") == SseEvent{});
  CHECK(inspect_sse_data("{").malformed);  // an object cut short: malformed, nothing found
}

TEST(inspect_content_values) {
  CHECK(!inspect_sse_data(R"({"choices":[{"delta":{"content":null}}]})").has_output);
  CHECK(!inspect_sse_data(R"({"choices":[{"delta":{"content":""}}]})").has_output);
  CHECK(!inspect_sse_data(R"({"choices":[{"delta":{"role":"assistant"}}]})").has_output);
  CHECK(inspect_sse_data(R"({"choices":[{"delta":{"content":"x"}}]})").has_output);
  CHECK(inspect_sse_data(R"({"choices":[{"delta":{"content":" "}}]})").has_output);
  CHECK(inspect_sse_data(R"({"choices":[{"text":"x","index":0}]})").has_output);
  CHECK(!inspect_sse_data(R"({"choices":[{"text":"","index":0}]})").has_output);
  CHECK(inspect_sse_data(R"({"choices":[{"delta":{"reasoning_content":"x"}}]})").has_output);
  CHECK(!inspect_sse_data(R"({"choices":[{"delta":{"reasoning_content":null}}]})").has_output);
  CHECK(inspect_sse_data(R"({"choices":[{"delta":{"reasoning":"x"}}]})").has_output);
  CHECK(!inspect_sse_data(R"({"choices":[{"delta":{"reasoning":""}}]})").has_output);
  // Whitespace around the colon, and between tokens.
  CHECK(inspect_sse_data("{ \"choices\" : [ { \"delta\" : { \"content\"\n\t: \"x\" } } ] }").has_output);
  CHECK(!inspect_sse_data("{ \"choices\" : [ { \"delta\" : { \"content\" :\tnull } } ] }").has_output);
  CHECK(!inspect_sse_data("{ \"content\" : \"\" }").has_output);
  // Escapes inside the content.
  CHECK(inspect_sse_data(R"({"content":"\"content\":\"x"})").has_output);
  CHECK(inspect_sse_data(R"({"content":"\\"})").has_output);
  CHECK(inspect_sse_data(R"({"content":"\""})").has_output);
  CHECK(inspect_sse_data(R"({"content":"\u0000"})").has_output);
  // A non-streaming body.
  CHECK(inspect_sse_data(R"({"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}})")
            .has_output);
  // Content given as an array of parts.
  CHECK(inspect_sse_data(R"({"delta":{"content":[{"type":"text","text":"hi"}]}})").has_output);
  CHECK(!inspect_sse_data(R"({"delta":{"content":[]}})").has_output);
  // A cut string is not counted.
  CHECK(!inspect_sse_data(R"({"delta":{"content":"abc)").has_output);
}

TEST(inspect_keys_only_match_as_keys) {
  // The key names appear as values or inside strings, never as keys.
  CHECK(!inspect_sse_data(R"({"role":"content","x":"text","y":"reasoning"})").has_output);
  CHECK(!inspect_sse_data(R"({"note":"\"content\":\"x\"","content":null})").has_output);
  CHECK(!inspect_sse_data(R"({"note":"{\"content\": \"x\"}"})").has_output);
  CHECK(!inspect_sse_data(R"({"a":"\\","content":""})").has_output);  // escaped backslash, then quote
  CHECK(!inspect_sse_data(R"({"a":"\\\"content\":\"x","content":""})").has_output);
  // Similar keys are other keys.
  CHECK(!inspect_sse_data(R"({"contents":"x","xcontent":"x","text_offset":"x","Content":"x"})").has_output);
  CHECK(!inspect_sse_data(R"({"tool_calls_x":[1],"my_usage":{"prompt_tokens":5}})").has_output);
  CHECK(!inspect_sse_data(R"({"my_usage":{"prompt_tokens":5}})").has_usage);
  CHECK(!inspect_sse_data(R"({"x":"\"usage\":{\"prompt_tokens\":5}"})").has_usage);
  CHECK(!inspect_sse_data(R"({"x":"\"error\":{}"})").error);
  // Logprobs' "content" is an array of token records, not output.
  CHECK(!inspect_sse_data(R"({"choices":[{"delta":{"content":""},"logprobs":{"content":[{"token":"a","logprob":-0.1,"text":"a"}]}}]})")
             .has_output);
}

TEST(inspect_tool_calls) {
  CHECK(!inspect_sse_data(R"({"choices":[{"delta":{"tool_calls":[]}}]})").has_output);
  CHECK(!inspect_sse_data(R"({"choices":[{"delta":{"tool_calls":[  ]}}]})").has_output);
  CHECK(!inspect_sse_data(R"({"choices":[{"delta":{"tool_calls":null}}]})").has_output);
  CHECK(inspect_sse_data(R"({"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]})")
            .has_output);
  CHECK(inspect_sse_data(R"({"choices":[{"delta":{"tool_calls":[ {"index":0} ]}}]})").has_output);
  CHECK(inspect_sse_data(R"({"choices":[{"delta":{"content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]})")
            .has_output);
  // Arguments holding keys of interest do not count as those keys.
  SseEvent e = inspect_sse_data(
      R"({"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"usage\":{\"prompt_tokens\":1}}"}}]}}]})");
  CHECK(e.has_output);
  CHECK(!e.has_usage);
}

TEST(inspect_usage) {
  SseEvent e = inspect_sse_data(R"({"choices":[{"delta":{"content":"x"}}],"usage":null})");
  CHECK(e.has_output);
  CHECK(!e.has_usage);
  CHECK(e.usage == agentperf::SseUsage{});

  e = inspect_sse_data(R"({"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}})");
  CHECK(e.has_usage);
  CHECK_EQ(e.usage.prompt_tokens, 10);
  CHECK_EQ(e.usage.completion_tokens, 5);
  CHECK_EQ(e.usage.cached_tokens, -1);

  e = inspect_sse_data(R"({"usage":{"prompt_tokens":10,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":8}}})");
  CHECK_EQ(e.usage.cached_tokens, 8);
  e = inspect_sse_data(R"({"usage":{"prompt_tokens_details":null,"prompt_tokens":10}})");
  CHECK(e.has_usage);
  CHECK_EQ(e.usage.prompt_tokens, 10);
  CHECK_EQ(e.usage.cached_tokens, -1);
  e = inspect_sse_data(R"({"usage":{"prompt_tokens_details":{"cached_tokens":null}}})");
  CHECK_EQ(e.usage.cached_tokens, -1);
  e = inspect_sse_data(R"({"usage":{"prompt_tokens_details":{"cached_tokens":0}}})");
  CHECK_EQ(e.usage.cached_tokens, 0);

  // llama.cpp / DeepSeek: prompt_cache_hit_tokens; prompt_tokens_details wins when both are there.
  e = inspect_sse_data(R"({"usage":{"prompt_tokens":100,"completion_tokens":3,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}})");
  CHECK_EQ(e.usage.cached_tokens, 64);
  e = inspect_sse_data(R"({"usage":{"prompt_cache_hit_tokens":64,"prompt_tokens_details":{"cached_tokens":60}}})");
  CHECK_EQ(e.usage.cached_tokens, 60);
  e = inspect_sse_data(R"({"usage":{"prompt_tokens_details":{"cached_tokens":60},"prompt_cache_hit_tokens":64}})");
  CHECK_EQ(e.usage.cached_tokens, 60);

  // cached_tokens elsewhere does not count.
  e = inspect_sse_data(R"({"usage":{"cached_tokens":5,"completion_tokens_details":{"cached_tokens":6,"reasoning_tokens":2}}})");
  CHECK(e.has_usage);
  CHECK_EQ(e.usage.cached_tokens, -1);
  CHECK_EQ(e.usage.completion_tokens, -1);
  e = inspect_sse_data(R"({"prompt_tokens_details":{"cached_tokens":6},"prompt_tokens":4})");
  CHECK(!e.has_usage);
  CHECK_EQ(e.usage.prompt_tokens, -1);

  // Whitespace, number forms, odd values.
  e = inspect_sse_data("{ \"usage\" : {\n \"prompt_tokens\" : 1234 ,\n \"completion_tokens\":\t0 } }");
  CHECK_EQ(e.usage.prompt_tokens, 1234);
  CHECK_EQ(e.usage.completion_tokens, 0);
  e = inspect_sse_data(R"({"usage":{"prompt_tokens":12.0,"completion_tokens":"7"}})");
  CHECK_EQ(e.usage.prompt_tokens, 12);
  CHECK_EQ(e.usage.completion_tokens, -1);
  e = inspect_sse_data(R"({"usage":{"prompt_tokens":-1,"completion_tokens":99999999999999999999999}})");
  CHECK_EQ(e.usage.prompt_tokens, -1);
  CHECK(e.usage.completion_tokens > 0);
  e = inspect_sse_data(R"({"usage":{}})");
  CHECK(e.has_usage);
  CHECK(e.usage == agentperf::SseUsage{});

  // Usage nested in another object (Groq's x_groq) counts; the first usage object wins.
  e = inspect_sse_data(R"({"choices":[],"x_groq":{"id":"r","usage":{"prompt_tokens":7,"completion_tokens":2}}})");
  CHECK(e.has_usage);
  CHECK_EQ(e.usage.prompt_tokens, 7);
  e = inspect_sse_data(R"({"usage":{"prompt_tokens":7},"x":{"usage":{"prompt_tokens":8}}})");
  CHECK_EQ(e.usage.prompt_tokens, 7);
  // A usage key inside usage is not a second usage.
  e = inspect_sse_data(R"({"usage":{"usage":{"prompt_tokens":3},"prompt_tokens":4}})");
  CHECK_EQ(e.usage.prompt_tokens, 4);
}

TEST(inspect_error) {
  CHECK(inspect_sse_data(R"({"error":{"message":"boom","type":"server_error"}})").error);
  CHECK(inspect_sse_data(R"({"error":"boom"})").error);
  CHECK(inspect_sse_data(R"({ "error" : { } })").error);
  CHECK(!inspect_sse_data(R"({"error":null,"choices":[]})").error);
  CHECK(!inspect_sse_data(R"({"error":false,"choices":[]})").error);
  CHECK(!inspect_sse_data(R"({"choices":[{"error":{"message":"nested"}}]})").error);
  CHECK(!inspect_sse_data(R"({"message":"error","type":"error"})").error);
  SseEvent e = inspect_sse_data(R"({"choices":[{"delta":{"content":"x"}}],"error":{"code":500}})");
  CHECK(e.error);
  CHECK(e.has_output);
}

TEST(inspect_hostile_input) {
  // Deep nesting is skipped without recursion blow-up; keys past the depth limit are not seen.
  std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + ",\"content\":\"x\"}";
  CHECK(inspect_sse_data(deep).has_output);
  std::string deep_obj;
  for (int i = 0; i < 5000; ++i) deep_obj += "{\"k\":";
  deep_obj += "1";
  for (int i = 0; i < 5000; ++i) deep_obj += "}";
  CHECK(!inspect_sse_data(deep_obj).malformed);
  // Unterminated constructs of every kind.
  const char* cut[] = {R"({"a)",          R"({"a")",        R"({"a":)",        R"({"a":"x)",
                       R"({"a":[)",        R"({"a":{)",      R"({"a":tr)",      R"({"a":1,)",
                       R"({"content":"\)", R"({"usage":{"prompt_tokens":)",
                       R"({"tool_calls":[{)"};
  for (const char* s : cut) {
    SseEvent e = inspect_sse_data(s);
    CHECK_MSG(!e.has_output && e.malformed, s);
  }
  // Escapes that look like the end of a string do not end it: a complete object.
  CHECK(!inspect_sse_data(R"({"a":"\\\"}"})").malformed);
  // A complete object followed by garbage, or broken inside after the output: malformed, with the
  // output it carried before the fault still seen.
  for (const char* s : {R"({"content":"x"} trailing)", R"({"content":"x","b" 1})", R"({"content":"x"}})"}) {
    SseEvent e = inspect_sse_data(s);
    CHECK_MSG(e.has_output && e.malformed, s);
  }
  CHECK(!inspect_sse_data("{\"content\":\"x\"} \r\n\t").malformed);  // trailing whitespace is fine
  // Every prefix of a real chunk: never crashes, never claims output before the content string
  // is complete.
  std::string chunk = R"({"choices":[{"index":0,"delta":{"content":"Hello \"w\" \\"},"finish_reason":null}],"usage":{"prompt_tokens":5}})";
  size_t content_end = chunk.find("\\\\\"") + 3;
  for (size_t i = 0; i <= chunk.size(); ++i) {
    SseEvent e = inspect_sse_data(std::string_view(chunk).substr(0, i));
    CHECK_MSG(e.has_output == (i >= content_end), "prefix " << i);
  }
  // Bytes that are not UTF-8, and NULs.
  static const char raw[] = "{\"content\":\"\xff\xfe\0\x01\",\"x\":\0}";
  std::string bin(raw, sizeof raw - 1);
  CHECK(inspect_sse_data(bin).has_output);
}

TEST(sse_random_streams_split_invariance) {
  // Random bodies built from SSE and JSON fragments: however a body is cut into feeds, the events
  // are those of the whole body.
  static const char* const kFragments[] = {
      "data: ", "data:", "data", "event: error", "event: x", ": c", "id: 1", "\n", "\r", "\r\n",
      "\n\n", "{", "}", "[", "]", "\"", "\\", "\\\"", ":", ",", " ", "\"content\"", "\"text\"",
      "\"tool_calls\"", "\"usage\"", "\"error\"", "\"prompt_tokens\"", "\"cached_tokens\"",
      "\"prompt_tokens_details\"", "\"x\"", "null", "12", "[DONE]", "{\"content\":\"a\"}"};
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string body;
    const int parts = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < parts; ++i) body += kFragments[rng() % std::size(kFragments)];
    SseParser whole_parser;
    const auto whole = run_pieces(whole_parser, body, {});
    std::vector<size_t> cuts;
    for (size_t pos = rng() % 5; pos < body.size(); pos += 1 + rng() % 6) cuts.push_back(pos);
    SseParser split_parser;
    const auto split = run_pieces(split_parser, body, cuts);
    if (split != whole || split_parser.has_partial() != whole_parser.has_partial()) {
      CHECK_MSG(false, "body:\n" << body << "\nwhole:\n" << join_events(whole) << "split:\n"
                                 << join_events(split));
      break;
    }
    // Cut after every LF LF, so that single-event feeds take the one-event fast path where they can.
    SseParser event_parser;
    const auto by_event = run_pieces(event_parser, body, event_cuts(body));
    if (by_event != whole || event_parser.has_partial() != whole_parser.has_partial()) {
      CHECK_MSG(false, "body:\n" << body << "\nwhole:\n" << join_events(whole) << "event by event:\n"
                                 << join_events(by_event));
      break;
    }
  }
}

TEST(sse_corpus_event_by_event) {
  for (const auto& c : load_corpus()) {
    SseParser parser;
    expect_events(c, run_pieces(parser, c.body, event_cuts(c.body)), "event by event");
    CHECK_MSG(parser.has_partial() == ends_cut(c.name), c.name << ": has_partial at end");
  }
}

// One-event feeds, at the edges of the fast path's shape: each gives what the same bytes give fed
// one at a time (the line-by-line path), also after a pending CR or an unfinished line.
TEST(sse_one_event_feeds_match_the_line_by_line_path) {
  const std::vector<std::string> events = {
      "data: {\"text\":\"a\"}\n\n", "data:{\"text\":\"a\"}\n\n", "data:  {\"text\":\"a\"}\n\n",
      "data:\n\n", "data: \n\n", "data: [DONE]\n\n", "data: {\"text\":\"a\"}\r\n\n",
      "data: {\"text\":\"a\"}\n\n\n", "data: {\"a\":1,\n\"text\":\"b\"}\n\n", "data: {\"text\":\"\ta\"}\n\n",
      "data: {\"text\":\"a\"}\rdata: 2\n\n", "datax: {\"text\":\"a\"}\n\n", "data {\"text\":\"a\"}\n\n",
      "data: {\"error\":{\"message\":\"x\"}}\n\n", "data: {\"usage\":{\"prompt_tokens\":7}}\n\n",
      "data: {\"text\":\"\xff\xfe\x80\"}\n\n", "data: not json\n\n"};
  const std::vector<std::string> before = {"", "data: {\"text\":\"x\"}\r", "data: {\"te", ": comment\n", "event: error\n"};
  for (const auto& b : before) {
    for (const auto& e : events) {
      std::vector<size_t> bytes;
      for (size_t i = 1; i < b.size() + e.size(); ++i) bytes.push_back(i);
      SseParser slow;
      const auto want = run_pieces(slow, b + e, bytes);
      SseParser fast;
      const auto got = run_pieces(fast, b + e, {b.size()});
      CHECK_MSG(got == want && fast.has_partial() == slow.has_partial(),
                "before " << b << " event " << e << ": byte by byte\n" << join_events(want) << "one feed\n"
                          << join_events(got));
    }
  }
}

// The raw content/text spans (fed back by history=generated) are the same however the body is split.
TEST(sse_text_identical_across_splits) {
  for (const auto& c : load_corpus()) {
    SseParser whole_parser;
    std::string whole;
    run_pieces(whole_parser, c.body, {}, &whole);
    for (size_t cut = 0; cut <= c.body.size(); ++cut) {
      SseParser parser;
      std::string split;
      run_pieces(parser, c.body, {cut}, &split);
      CHECK_MSG(split == whole, c.name << " split at " << cut);
    }
  }
}

TEST(sse_text_is_the_raw_escaped_content) {
  SseEvent ev = inspect_sse_data(R"({"choices":[{"delta":{"content":"a \"q\" b\n"}}]})");
  CHECK(ev.has_output);
  CHECK_EQ(std::string(ev.text), std::string(R"(a \"q\" b\n)"));
  ev = inspect_sse_data(R"({"choices":[{"delta":{"reasoning_content":"think"}}]})");
  CHECK(ev.has_output);
  CHECK(ev.text.empty());  // reasoning is not fed back as the reply
  ev = inspect_sse_data(R"({"choices":[{"text":"tok","index":0}]})");
  CHECK_EQ(std::string(ev.text), std::string("tok"));
}

TEST(sse_event_bound_unterminated_line) {
  // A line that never ends (no newline for more than the bound): the parser stops buffering.
  SseParser p;
  p.set_max_event_bytes(4096);
  std::string chunk(1000, 'x');
  std::vector<SseEvent> got;
  auto on = [&](const SseEvent& e) { got.push_back(e); };
  std::string first = "data: {\"choices\":[{\"delta\":{\"content\":\"";
  p.feed(first.data(), first.size(), on);
  for (int i = 0; i < 3; ++i) p.feed(chunk.data(), chunk.size(), on);
  CHECK(!p.overflowed());  // ~3 KiB: within the bound
  for (int i = 0; i < 1000; ++i) p.feed(chunk.data(), chunk.size(), on);  // 1 MB more
  CHECK(p.overflowed());
  CHECK(got.empty());
  // Sticky: even a complete event after it is ignored, until reset().
  std::string ok = "\n\ndata: {\"text\":\"a\"}\n\n";
  p.feed(ok.data(), ok.size(), on);
  CHECK(got.empty());
  p.reset();
  CHECK(!p.overflowed());
  CHECK_EQ(feed_all(p, "data: {\"text\":\"a\"}\n\n").size(), 1u);
}

TEST(sse_event_bound_in_one_feed_and_joined_data) {
  // One line longer than the bound inside a single feed.
  {
    SseParser p;
    p.set_max_event_bytes(2048);
    std::string line = "data: {\"text\":\"" + std::string(5000, 'y') + "\"}\n\n";
    CHECK(feed_all(p, line).empty());
    CHECK(p.overflowed());
  }
  // Many data lines of one event, each short, joined past the bound.
  {
    SseParser p;
    p.set_max_event_bytes(2048);
    std::string ev;
    for (int i = 0; i < 100; ++i) ev += "data: " + std::string(50, 'z') + "\n";
    CHECK(feed_all(p, ev).empty());
    CHECK(p.overflowed());
  }
  // Exactly at the bound is fine, whether the line comes whole or byte by byte.
  {
    const std::string payload = "{\"text\":\"" + std::string(2048 - 6 - 11, 'w') + "\"}";
    const std::string line = "data: " + payload;  // 2048 bytes without its newline
    CHECK_EQ(line.size(), size_t{2048});
    for (size_t step : {line.size() + 2, size_t{1}, size_t{333}}) {
      SseParser p;
      p.set_max_event_bytes(2048);
      const std::string s = line + "\n\n";
      std::vector<SseEvent> got;
      std::string seen;
      for (size_t i = 0; i < s.size(); i += step)
        p.feed(s.data() + i, std::min(step, s.size() - i), [&](const SseEvent& e) {
          got.push_back(e);
          seen = std::string(p.event_data());
        });
      CHECK(!p.overflowed());
      CHECK_EQ(got.size(), 1u);
      CHECK(seen == payload);
    }
  }
  // Normal streams far longer than the bound in total are never affected: the bound is per event.
  {
    SseParser p;
    p.set_max_event_bytes(1024);
    std::string s;
    for (int i = 0; i < 5000; ++i) s += "data: {\"text\":\"t" + std::to_string(i) + "\"}\n\n";
    CHECK_EQ(feed_all(p, s).size(), 5000u);
    CHECK(!p.overflowed());
  }
}

TEST(sse_event_data_shows_the_event_in_the_callback) {
  SseParser p;
  std::vector<std::string> data;
  std::string s = "data: {\"text\":\"a\"}\n\ndata: not json\n\ndata: {\"x\":\ndata: 1}\n\nevent: error\ndata: {\"error\":\"e\"}\n\n";
  for (size_t step : {s.size(), size_t{1}, size_t{7}}) {
    data.clear();
    for (size_t i = 0; i < s.size(); i += step)
      p.feed(s.data() + i, std::min(step, s.size() - i), [&](const SseEvent&) { data.emplace_back(p.event_data()); });
    CHECK_EQ(data.size(), 4u);
    if (data.size() == 4) {
      CHECK(data[0] == "{\"text\":\"a\"}");
      CHECK(data[1] == "not json");
      CHECK(data[2] == "{\"x\":\n1}");
      CHECK(data[3] == "{\"error\":\"e\"}");
    }
  }
}

// Events of one server's shape around varying strings, some with a byte changed, inserted or
// removed anywhere: the parser (which recognises the shape of the last text event) reports each
// exactly as a full inspection of its bytes does, text included.
TEST(sse_shape_shortcut_reports_what_the_full_inspection_finds) {
  static const char* const kShapes[][2] = {
      {"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
       "\"delta\":{\"content\":\"",
       "\"},\"logprobs\":null,\"finish_reason\":null}]}"},
      {"{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"", "\",\"finish_reason\":null}]}"},
      {"{\"choices\":[{\"delta\":{\"reasoning_content\":\"", "\"}}]}"},
      {"{\"choices\":[{\"delta\":{\"content\":\"", "\",\"tool_calls\":[]}}],\"usage\":null} "},
      {"{\"choices\":[{\"delta\":{\"content\":\"", "\"}},{\"delta\":{\"content\":\"\"}}]}"},
  };
  static const char* const kStrings[] = {"a", " the", "\\\"", "x\\\\", "\xc3\xa9", "\\n", "}", "\\u0022", "ab\\"};
  static const char kBytes[] = "\"{}[],:\\ a0nx";
  std::mt19937_64 rng(5);
  SseParser parser;
  int changed = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    const auto& shape = kShapes[iter / 500 % std::size(kShapes)];
    std::string ev = std::string(shape[0]) + kStrings[rng() % std::size(kStrings)] + shape[1];
    if (rng() % 3 == 0) {
      ++changed;
      const size_t at = rng() % ev.size();
      const char b = kBytes[rng() % (sizeof kBytes - 1)];
      switch (rng() % 3) {
        case 0: ev[at] = b; break;
        case 1: ev.insert(ev.begin() + static_cast<std::ptrdiff_t>(at), b); break;
        default: ev.erase(at, 1); break;
      }
    }
    const SseEvent want = inspect_sse_data(ev);
    const std::string body = "data: " + ev + "\n\n";
    std::vector<SseEvent> got;
    std::string text;
    parser.feed(body.data(), body.size(), [&](const SseEvent& e) {
      got.push_back(e);
      text = std::string(e.text);
    });
    SseEvent w = want;
    w.text = {};
    if (got.size() != 1) {
      CHECK_MSG(false, ev << ": " << got.size() << " events");
      break;
    }
    got[0].text = {};
    if (!(got[0] == w) || text != want.text) {
      CHECK_MSG(false, ev << ": parser\n" << join_events(got) << text << "\nfull inspection\n" << join_events({w}) << want.text);
      break;
    }
  }
  // Most unchanged events took the shortcut (not the first of each shape, nor those after a change
  // that gave a new valid shape).
  CHECK_MSG(parser.shape_hits() > (20000u - changed) / 2, parser.shape_hits() << " shortcut hits of 20000 (" << changed << " changed)");
}
