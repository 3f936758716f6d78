// What the simulator reads from an OpenAI-style generation request, and the prompt-token rule.
//
// parse_sim_request() reads the top-level members of the JSON body (a small scanner, not a full
// JSON parser: it skips over values it does not need and validates what it reads):
//
//   stream (bool, default false), stream_options.include_usage, stream_options.continuous_usage_stats,
//   max_tokens or max_completion_tokens (int), min_tokens (int), ignore_eos (bool),
//   messages (chat, required), prompt (completions, required: a string or an array of token ids).
//
// The prompt-token rule (deterministic, no tokenizer):
//   - chat: the `messages` value exactly as sent (its JSON text, from '[' to ']', escapes and all):
//     prompt_tokens = ceil(bytes / 4); block i covers bytes [4·B·i, 4·B·(i+1)) of that text, where
//     B = block_tokens;
//   - completions with a string prompt: the same rule over the bytes between the string's quotes;
//   - completions with a token-id prompt ("prompt": [1, 2, 3]): prompt_tokens = the number of ids;
//     block i covers ids [B·i, B·(i+1)).
// Only full blocks are hashed (a trailing partial block is never cached). Each block hash chains
// the previous one (see sim_prefix_cache.h), seeded by a fixed constant, so a hash names a prefix.
//
// Thread safety: pure functions. Allocation: the returned hashes vector and error string.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace agentperf {

struct SimRequest {
  bool stream = false;
  bool include_usage = false;           ///< stream_options.include_usage
  bool continuous_usage_stats = false;  ///< stream_options.continuous_usage_stats (usage in every chunk)
  int64_t max_tokens = -1;              ///< max_tokens / max_completion_tokens; -1: absent
  int64_t min_tokens = -1;              ///< -1: absent
  bool ignore_eos = false;
  bool token_ids = false;               ///< the prompt was an array of token ids
  int64_t prompt_tokens = 0;
  std::vector<uint64_t> block_hashes;   ///< one per full block of the prompt, chained
  uint64_t prompt_hash = 0;             ///< hash of the whole prompt (seeds the EOS draw)
};

/// Parses `body` of a POST to /v1/chat/completions (`chat` = true) or /v1/completions. On success
/// returns an empty string and fills `out`; otherwise returns a message for a 400 response.
/// `block_tokens` >= 1 is the prefix-cache block size in tokens.
std::string parse_sim_request(std::string_view body, bool chat, int32_t block_tokens, SimRequest* out);

/// The chained 64-bit hash used for prompt blocks: hash of `data` continuing from `seed`.
uint64_t sim_hash_bytes(const void* data, size_t len, uint64_t seed);

}  // namespace agentperf
