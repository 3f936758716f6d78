// Names a thread (or the calling one) "<prefix>-<index>" (at most 15 characters, as Linux allows), so `top -H`,
// `perf` and /proc/PID/task/*/comm tell the engine's workers and the simulator's apart from the
// Python threads of the same process. Best effort: a name that cannot be set is left as it was.
#pragma once

#include <pthread.h>

#include <cstdio>

namespace agentperf {

inline void name_thread(pthread_t thread, const char* prefix, int index) {
  char name[16];
  std::snprintf(name, sizeof name, "%s-%d", prefix, index);
  pthread_setname_np(thread, name);
}

inline void name_this_thread(const char* prefix, int index) { name_thread(pthread_self(), prefix, index); }

}  // namespace agentperf
