// The replayed workload, pre-encoded: conversations made of JSON fragments shared by every agent.
//
// A request body for turn k of a conversation is assembled as a list of slices (scatter-gather):
//
//   {"model":..,"stream":true,..,"max_tokens":N <extra_body> <conversation.members>,  (small, per request)
//   <request.open>                                                   e.g. "messages":[  or  "prompt":[
//   fragments[pieces[b]] ... <agent's isolation prefix> ... fragments[pieces[e-1]]   (b, e: the turn's range)
//   <request.close>}                                                 e.g. ]
//
// Fragments are JSON text encoded once per conversation (in Python) and never copied per agent or
// per request; separators (',') are part of the fragments. A turn lists the fragments its request
// carries as a range of `pieces` (indices into `fragments`), so append-only chat histories and
// token-block prompts that share blocks between turns are both expressed without copies.
//
// Ownership: a Workload is immutable once handed to an Engine, which holds it by shared_ptr; any
// thread may read it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace agentperf {

struct TurnSpec {
  uint32_t piece_begin = 0;      ///< this request's fragments are pieces[piece_begin, piece_end)
  uint32_t piece_end = 0;
  int32_t insert_at = -1;        ///< offset in that range before which the isolation prefix goes; -1: none
  int32_t max_tokens = -1;       ///< max_tokens to ask for (-1: omit)
  int32_t min_tokens = -1;       ///< min_tokens to ask for (-1: omit)
  int64_t tool_delay_ns = 0;     ///< the recorded delay after this turn (used by ToolDelayKind::kRecorded)
};

struct Conversation {
  std::vector<std::string> fragments;
  std::vector<uint32_t> pieces;
  /// Per fragment: the turn whose recorded reply text it holds (the content of an assistant message,
  /// JSON-escaped, without quotes), or -1. With history=generated an agent sends the text it received
  /// for that turn instead. Empty: no fragment is a reply.
  std::vector<int32_t> reply_of;
  /// Extra JSON members sent with every request of this conversation, each with its leading ','
  /// (e.g. `,"tools":[...]`); empty: none.
  std::string members;
  std::vector<TurnSpec> turns;
  /// turn_bytes[k] = total size of turn k's fragments; filled by Workload::finalize().
  std::vector<uint64_t> turn_bytes;
};

/// How an agent's cache-isolation prefix is written.
enum class IsolationStyle : uint8_t {
  kText = 0,      ///< "[rid:<16 hex digits>] " inside a JSON string (chat content, text prompts)
  kTokenIds = 1,  ///< isolation_tokens random token ids, each followed by ',' (token-id prompts)
};

struct RequestOptions {
  std::string path = "/v1/chat/completions";  ///< request path on the server (base path included)
  std::string model;
  bool include_usage = true;    ///< ask for stream_options.include_usage
  bool ignore_eos = false;      ///< send "ignore_eos":true (vLLM, SGLang, llama.cpp)
  /// Extra top-level JSON members, each with its leading ',' (e.g. `,"temperature":0`); empty: none.
  std::string extra_body;
  std::string open = "\"messages\":[";  ///< written before a turn's fragments
  std::string close = "]";              ///< written after them (then the closing brace)
  IsolationStyle isolation_style = IsolationStyle::kText;
  int32_t isolation_tokens = 4;         ///< kTokenIds: how many ids
  int32_t isolation_token_lo = 1000;    ///< kTokenIds: ids are drawn from [lo, hi)
  int32_t isolation_token_hi = 30000;
};

/// How the delay between a turn's completion and the next turn (the agent's tool time) is chosen.
/// An agent draws it from its own random stream when the turn completes.
enum class ToolDelayKind : uint8_t {
  kRecorded = 0,   ///< the turn's TurnSpec::tool_delay_ns
  kNone = 1,       ///< 0
  kFixed = 2,      ///< a_ns
  kUniform = 3,    ///< uniform in [a_ns, b_ns]
  kLognormal = 4,  ///< lognormal with median a_ns and shape sigma (of the underlying normal)
};

struct ToolDelayPolicy {
  ToolDelayKind kind = ToolDelayKind::kRecorded;
  int64_t a_ns = 0;
  int64_t b_ns = 0;
  double sigma = 0.0;
  int64_t cap_ns = -1;  ///< >= 0: every delay is capped at this; -1: no cap
};

struct Workload {
  std::vector<Conversation> conversations;
  RequestOptions request;
  ToolDelayPolicy tool_delay;
  /// Validates and fills derived fields. Throws std::invalid_argument with a message naming the
  /// conversation and turn when a range or index is out of bounds or no turn exists, or when the
  /// tool delay policy's parameters are out of range.
  void finalize();
};

}  // namespace agentperf
