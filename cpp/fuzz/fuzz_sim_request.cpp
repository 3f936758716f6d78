// libFuzzer target: the simulator's request parser (cpp/src/sim/sim_request.cpp).
// Input: one byte (bit 0: a chat request, else /v1/completions; the rest: the prefix-cache block
// size, 1..128 tokens), then the request body. Checks what the parser promises of a request it
// accepts: a prompt of at least one token, only full blocks hashed, a max_tokens that is absent or
// >= 1, min_tokens within it; and the same answer when it reads the body again.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "sim/sim_request.h"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_sim_request: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  if (size < 1) return 0;
  const bool chat = bytes[0] & 1;
  const int32_t block_tokens = 1 + (bytes[0] >> 1);
  const std::string body(reinterpret_cast<const char*>(bytes + 1), size - 1);  // exact size: ASan sees overreads
  agentperf::SimRequest req;
  std::string err = agentperf::parse_sim_request(body, chat, block_tokens, &req);

  agentperf::SimRequest again;
  if (agentperf::parse_sim_request(body, chat, block_tokens, &again) != err) fail("a second read disagreed");
  if (!err.empty()) return 0;
  if (again.prompt_tokens != req.prompt_tokens || again.block_hashes != req.block_hashes ||
      again.prompt_hash != req.prompt_hash)
    fail("a second read hashed the prompt differently");
  if (req.prompt_tokens < 1) fail("an accepted prompt has no token");
  if (req.block_hashes.size() > static_cast<uint64_t>(req.prompt_tokens / block_tokens))
    fail("more blocks hashed than full blocks in the prompt");
  if (req.token_ids && req.block_hashes.size() != static_cast<uint64_t>(req.prompt_tokens / block_tokens))
    fail("a token-id prompt's full blocks were not all hashed");
  if (req.max_tokens != -1 && req.max_tokens < 1) fail("an accepted max_tokens is below 1");
  if (req.min_tokens < -1 || (req.max_tokens > 0 && req.min_tokens > req.max_tokens)) fail("an accepted min_tokens is out of range");
  if (req.token_ids && chat) fail("a chat request with a token-id prompt");
  return 0;
}
