// The replayed workload, pre-encoded: conversations made of JSON fragments shared by every agent.
//
// A request body for turn k of a conversation is assembled as a list of slices (scatter-gather):
//
//   {"model":..,"stream":true,..,"max_tokens":N, <extra_body>,"messages":[      (per request, small)
//   fragments[0 .. insert_at)  <agent's isolation prefix>  fragments[insert_at .. turns[k].fragment_end)
//   ]}
//
// The fragments are the JSON text of the messages (each after the first starts with its ','),
// split once so that the isolation prefix lands at the start of the first message's text content.
// They are encoded once per conversation (in Python) and never copied per agent or per request.
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
  uint32_t fragment_end = 0;     ///< fragments [0, fragment_end) are this request's messages
  int32_t max_tokens = -1;       ///< max_tokens to ask for (-1: omit)
  int32_t min_tokens = -1;       ///< min_tokens to ask for (-1: omit)
  int64_t tool_delay_ns = 0;     ///< delay after this turn completes before the next is scheduled
};

struct Conversation {
  std::vector<std::string> fragments;
  /// Fragment index before which the agent's isolation prefix is inserted; -1: never inserted.
  int32_t insert_at = -1;
  std::vector<TurnSpec> turns;
  /// cumulative_bytes[i] = total size of fragments [0, i); filled by Workload::finalize().
  std::vector<uint64_t> cumulative_bytes;
};

struct RequestOptions {
  std::string path = "/v1/chat/completions";  ///< request path on the server (base path included)
  std::string model;
  bool include_usage = true;    ///< ask for stream_options.include_usage
  bool ignore_eos = false;      ///< send "ignore_eos":true (vLLM, SGLang, llama.cpp)
  /// Extra top-level JSON members, without braces, e.g. "\"temperature\":0" (empty: none).
  std::string extra_body;
};

struct Workload {
  std::vector<Conversation> conversations;
  RequestOptions request;
  /// Validates and fills derived fields. Throws std::invalid_argument with a message naming the
  /// conversation and turn when a turn's fragment_end is out of range or no turn exists.
  void finalize();
};

}  // namespace agentperf
