// Tests of how the simulator reads a request (fields, the prompt-token rule, block hashes) and of
// its prefix cache (LRU order, capacity, lookups that stop at the first miss).
#include <string>
#include <vector>

#include "sim/sim_prefix_cache.h"
#include "sim/sim_request.h"
#include "testing.h"

using namespace agentperf;

namespace {

std::string chat_body(const std::string& messages, const std::string& extra = "") {
  return "{\"model\":\"m\",\"stream\":true" + extra + ",\"messages\":" + messages + "}";
}

}  // namespace

TEST(sim_request_reads_the_generation_fields) {
  std::string messages = R"([{"role":"user","content":"hello \"max_tokens\": 5 [rid:] }"}])";
  std::string body = chat_body(messages,
                               R"(,"stream_options":{"include_usage":true,"continuous_usage_stats":true},)"
                               R"("max_tokens":42,"min_tokens":7,"ignore_eos":true,"temperature":0.5,"tools":[{"a":[1,{}]}])");
  SimRequest r;
  CHECK_EQ(parse_sim_request(body, true, 16, &r), std::string());
  CHECK(r.stream && r.include_usage && r.continuous_usage_stats && r.ignore_eos);
  CHECK_EQ(r.max_tokens, 42);
  CHECK_EQ(r.min_tokens, 7);
  CHECK_EQ(r.prompt_tokens, static_cast<int64_t>((messages.size() + 3) / 4));
  CHECK(!r.token_ids);
}

TEST(sim_request_defaults_and_aliases) {
  SimRequest r;
  CHECK_EQ(parse_sim_request(R"({"messages":[],"max_completion_tokens":9,"stream_options":null})", true, 16, &r),
           std::string());
  CHECK(!r.stream && !r.include_usage);
  CHECK_EQ(r.max_tokens, 9);
  CHECK_EQ(r.min_tokens, -1);
  CHECK_EQ(r.prompt_tokens, 1);
}

TEST(sim_request_token_id_prompts) {
  std::string ids = "[";
  for (int i = 0; i < 40; ++i) ids += (i ? "," : "") + std::to_string(1000 + i);
  ids += "]";
  SimRequest r;
  CHECK_EQ(parse_sim_request("{\"prompt\": " + ids + ", \"max_tokens\": 3}", false, 16, &r), std::string());
  CHECK(r.token_ids);
  CHECK_EQ(r.prompt_tokens, 40);
  CHECK_EQ(r.block_hashes.size(), size_t{2});  // 40 ids: two full blocks of 16
  // A prompt that extends it shares both blocks; one that differs in id 0 shares none.
  SimRequest longer, other;
  std::string ids2 = ids.substr(0, ids.size() - 1) + ",7,8,9]";
  CHECK_EQ(parse_sim_request("{\"prompt\":" + ids2 + "}", false, 16, &longer), std::string());
  CHECK_EQ(longer.block_hashes[0], r.block_hashes[0]);
  CHECK_EQ(longer.block_hashes[1], r.block_hashes[1]);
  std::string ids3 = "[1" + ids.substr(5);
  CHECK_EQ(parse_sim_request("{\"prompt\":" + ids3 + "}", false, 16, &other), std::string());
  CHECK(other.block_hashes[0] != r.block_hashes[0] && other.block_hashes[1] != r.block_hashes[1]);
}

TEST(sim_request_string_prompts_use_the_byte_rule) {
  SimRequest r;
  std::string text(130, 'a');
  CHECK_EQ(parse_sim_request("{\"prompt\":\"" + text + "\"}", false, 16, &r), std::string());
  CHECK_EQ(r.prompt_tokens, 33);                 // ceil(130 / 4)
  CHECK_EQ(r.block_hashes.size(), size_t{2});    // 130 bytes: two full blocks of 64 bytes
}

TEST(sim_request_block_hashes_follow_the_prefix) {
  // Turn 2 of a conversation extends turn 1's messages: every block of turn 1 that ends before
  // its closing ']' is shared; a different isolation prefix shares nothing.
  std::string m1 = R"([{"role":"system","content":"[rid:00000000000000aa] You are an agent. )" + std::string(300, 'x') +
                   R"("},{"role":"user","content":"fix it"}])";
  std::string m2 = m1.substr(0, m1.size() - 1) + R"(,{"role":"assistant","content":"ok"},{"role":"user","content":"more"}])";
  std::string other = m1;
  other.replace(other.find("aa]"), 2, "bb");
  SimRequest a, b, c;
  CHECK_EQ(parse_sim_request(chat_body(m1), true, 16, &a), std::string());
  CHECK_EQ(parse_sim_request(chat_body(m2), true, 16, &b), std::string());
  CHECK_EQ(parse_sim_request(chat_body(other), true, 16, &c), std::string());
  size_t shared = (m1.size() - 1) / 64;
  CHECK(b.block_hashes.size() > shared);
  for (size_t i = 0; i < shared; ++i) CHECK_EQ(a.block_hashes[i], b.block_hashes[i]);
  for (size_t i = 0; i < a.block_hashes.size(); ++i) CHECK(a.block_hashes[i] != c.block_hashes[i]);
  CHECK(a.prompt_hash != c.prompt_hash);
}

TEST(sim_request_rejects_what_it_cannot_serve) {
  SimRequest r;
  CHECK(!parse_sim_request("not json", true, 16, &r).empty());
  CHECK(!parse_sim_request(R"({"model":"m"})", true, 16, &r).empty());                    // no messages
  CHECK(!parse_sim_request(R"({"messages":"hi"})", true, 16, &r).empty());
  CHECK(!parse_sim_request(R"({"prompt":["a","b"]})", false, 16, &r).empty());           // batched prompts
  CHECK(!parse_sim_request(R"({"prompt":[1,-2]})", false, 16, &r).empty());
  CHECK(!parse_sim_request(R"({"prompt":[]})", false, 16, &r).empty());
  CHECK(!parse_sim_request(R"({"messages":[],"max_tokens":0})", true, 16, &r).empty());
  CHECK(!parse_sim_request(R"({"messages":[],"max_tokens":5,"min_tokens":6})", true, 16, &r).empty());
  CHECK(!parse_sim_request(R"({"messages":[],"max_tokens":2.5})", true, 16, &r).empty());
  CHECK(!parse_sim_request(R"({"messages":[]} x)", true, 16, &r).empty());
  CHECK(!parse_sim_request(R"({"messages":[{"a":"unterminated}])", true, 16, &r).empty());
  // The chat route ignores "prompt"; the completions route ignores "messages".
  CHECK(!parse_sim_request(R"({"prompt":"hi"})", true, 16, &r).empty());
  CHECK(!parse_sim_request(R"({"messages":[]})", false, 16, &r).empty());
}

TEST(sim_prefix_cache_lookup_stops_at_the_first_miss) {
  SimPrefixCache cache(100);
  cache.insert({1, 2, 3, 4});
  CHECK_EQ(cache.lookup({1, 2, 3, 4, 5}, 10), 4);
  CHECK_EQ(cache.lookup({1, 2, 9, 4}, 10), 2);
  CHECK_EQ(cache.lookup({9, 2, 3}, 10), 0);
  CHECK_EQ(cache.lookup({1, 2, 3, 4}, 3), 3);  // max_blocks
  SimPrefixCache none(0);
  none.insert({1, 2});
  CHECK_EQ(none.lookup({1, 2}, 10), 0);
}

TEST(sim_prefix_cache_evicts_least_recently_used_tails_first) {
  SimPrefixCache cache(4);
  cache.insert({1, 2, 3});
  cache.insert({7, 8});  // evicts 3, the LRU block (the tail of the first prompt)
  CHECK_EQ(cache.size_blocks(), 4);
  CHECK_EQ(cache.evictions(), uint64_t{1});
  CHECK_EQ(cache.lookup({1, 2, 3}, 10), 2);
  // 1 and 2 were just used; inserting 5 evicts 8 (the tail of the other prompt).
  cache.insert({5});
  CHECK_EQ(cache.lookup({7, 8}, 10), 1);
  CHECK_EQ(cache.lookup({1, 2}, 10), 2);
}
