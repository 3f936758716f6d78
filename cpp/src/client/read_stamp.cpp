#include "client/read_stamp.h"

#include <sys/socket.h>

#include <ctime>

#include "agentperf/clock.h"

namespace agentperf {

namespace {
constexpr int64_t kMaxPlausibleDelayNs = 10 * kNsPerS;

int64_t ns_of(const timespec& ts) { return static_cast<int64_t>(ts.tv_sec) * kNsPerS + ts.tv_nsec; }
}  // namespace

bool enable_receive_stamps(int fd) {
  int one = 1;
  return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) == 0;
}

ssize_t read_stamped(int fd, char* buf, size_t n, ReadStamp* stamp) {
  iovec iov{buf, n};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t got = ::recvmsg(fd, &msg, 0);
  const int64_t mono = now_ns();
  stamp->user_ns = stamp->at_ns = mono;
  stamp->kernel = false;
  if (got <= 0) return got;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS) continue;
    timespec kernel;
    __builtin_memcpy(&kernel, CMSG_DATA(c), sizeof kernel);
    const int64_t delay = wall_ns() - ns_of(kernel);
    if (kernel.tv_sec == 0 || delay > kMaxPlausibleDelayNs || delay < -kNsPerMs) break;  // no stamp, or a clock step
    stamp->at_ns = mono - (delay > 0 ? delay : 0);
    stamp->kernel = true;
    break;
  }
  return got;
}

}  // namespace agentperf
