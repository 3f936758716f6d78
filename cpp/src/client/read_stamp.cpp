#include "client/read_stamp.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ctime>
#include <mutex>

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

namespace {
// A connected loopback pair whose receiving end asks for stamps; -1s when one could not be made.
struct StampHolder {
  int listener = -1, sender = -1, receiver = -1;
  bool stamped = false;

  StampHolder() {
    connect_pair();
    if (listener >= 0) ::close(listener);  // only the pair is kept
    listener = -1;
    if (receiver >= 0) enable_receive_stamps(receiver);
  }

  void connect_pair() {
    listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(listener, 1) != 0 ||
        ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      return;
    sender = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sender < 0 || ::connect(sender, reinterpret_cast<sockaddr*>(&addr), len) != 0) return;
    receiver = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  }

  // Sends one byte over the pair and reads it back: whether it came with the kernel's stamp.
  bool probe() {
    if (sender < 0 || receiver < 0) return false;
    char byte = 's';
    if (::send(sender, &byte, 1, MSG_NOSIGNAL) != 1) return false;
    ReadStamp stamp;
    return read_stamped(receiver, &byte, 1, &stamp) == 1 && stamp.kernel;
  }
};
}  // namespace

bool keep_receive_stamps_on(int64_t wait_ns) {
  static std::mutex mutex;
  static StampHolder* holder = nullptr;  // held (never freed) for the life of the process
  std::lock_guard<std::mutex> lock(mutex);
  if (holder != nullptr) return holder->stamped || (holder->stamped = holder->probe());  // waited once already
  holder = new StampHolder();
  for (const int64_t until = now_ns() + wait_ns; !holder->stamped; ) {
    holder->stamped = holder->probe();
    if (holder->stamped || now_ns() >= until) break;
    ::usleep(1000);
  }
  return holder->stamped;
}

ssize_t read_stamped(int fd, char* buf, size_t n, ReadStamp* stamp) {
  iovec iov{buf, n};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  // The raw system call: glibc's recvmsg() is a thread cancellation point and toggles the thread's
  // cancellation state around every call; the engine's threads are never cancelled.
  ssize_t got = ::syscall(SYS_recvmsg, fd, &msg, 0);
  stamp->kernel = false;
  if (got <= 0 || msg.msg_controllen == 0) {
    stamp->user_ns = stamp->at_ns = now_ns();
    return got;
  }
  // The realtime clock is read before the monotonic one: the time between the two readings then
  // moves the converted stamp later (towards the user-space stamp), never before the bytes arrived.
  const int64_t wall = wall_ns();
  const int64_t mono = now_ns();
  stamp->user_ns = stamp->at_ns = mono;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS) continue;
    timespec kernel;
    __builtin_memcpy(&kernel, CMSG_DATA(c), sizeof kernel);
    const int64_t delay = wall - ns_of(kernel);
    if (kernel.tv_sec == 0 || delay > kMaxPlausibleDelayNs || delay < -kNsPerMs) break;  // no stamp, or a clock step
    stamp->at_ns = mono - (delay > 0 ? delay : 0);
    stamp->kernel = true;
    break;
  }
  return got;
}

}  // namespace agentperf
