#include "agentperf/record.h"

namespace agentperf {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kNone: return "none";
    case ErrorKind::kConnect: return "connect";
    case ErrorKind::kHttpStatus: return "http_status";
    case ErrorKind::kProtocol: return "protocol";
    case ErrorKind::kTruncated: return "truncated";
    case ErrorKind::kReset: return "reset";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kSseMalformed: return "sse_malformed";
    case ErrorKind::kStreamError: return "stream_error";
    case ErrorKind::kNoOutput: return "no_output";
    case ErrorKind::kCancelled: return "cancelled";
    case ErrorKind::kWrite: return "write";
    case ErrorKind::kIdleTimeout: return "idle_timeout";
    case ErrorKind::kOversized: return "oversized";
  }
  return "unknown";
}

}  // namespace agentperf
