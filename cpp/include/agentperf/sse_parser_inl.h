// Inline part of sse_parser.h: the template feed() is a thin loop over non-template steps that live
// in sse_parser.cpp, so the callback is inlined at the call site while the scanning code is shared.
#pragma once

#include "agentperf/sse_parser.h"

namespace agentperf {

template <class F>
void SseParser::feed(const char* data, size_t n, F&& on_event) {
  SseEvent ev;
  if (whole_event(data, n, &ev)) {  // the common shape: exactly one `data: ...` event, nothing pending
    const SseEvent& cev = ev;
    on_event(cev);
    return;
  }
  begin_feed(data, n);
  while (next_event(&ev)) {
    const SseEvent& cev = ev;
    on_event(cev);
  }
}

}  // namespace agentperf
