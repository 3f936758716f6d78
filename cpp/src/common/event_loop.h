// One epoll event loop per thread, with nanosecond timers and a cross-thread wake-up.
//
// Thread safety: every method except wake() must be called on the loop's own thread. wake() may be
// called from any thread; it makes a blocked run_once() return (and call the wake handler).
// Timers: a binary min-heap of (deadline_ns, target, token) armed on a timerfd with an absolute
// CLOCK_MONOTONIC deadline, so a timer fires within the kernel's timer slack (~50 us), not the
// 1 ms granularity of epoll_wait's timeout. A timer cannot be cancelled: its target receives the
// token back and ignores tokens it no longer expects (generation counting).
// The timerfd is set lazily, only as the loop goes to sleep and only when it would otherwise go off
// later than the earliest timer: a timer due at once (a request sent from outside a connection's
// callback) fires at the end of the loop iteration without touching it, and one due later than
// what is set leaves it alone (an early expiry costs one wake-up). Setting it reprograms the
// kernel's timer, a trap to the hypervisor on a VM: once per request, that was 3-4 % of the
// client's CPU at 1,000 HTTP/1.1 streams.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <vector>

namespace agentperf {

/// Something that owns a file descriptor registered with an EventLoop.
class IoHandler {
 public:
  virtual ~IoHandler() = default;
  /// `events` is the epoll event mask (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, ...).
  virtual void on_io(uint32_t events) = 0;
};

/// Something that receives timer callbacks.
class TimerTarget {
 public:
  virtual ~TimerTarget() = default;
  virtual void on_timer(uint64_t token) = 0;
};

class EventLoop {
 public:
  /// Throws std::system_error when the epoll/timerfd/eventfd descriptors cannot be created.
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  /// Registers / changes / removes interest in `fd`. Return 0 or -errno.
  int add(int fd, uint32_t events, IoHandler* handler);
  int modify(int fd, uint32_t events, IoHandler* handler);
  int remove(int fd);

  /// Calls target->on_timer(token) at or after `deadline_ns` (monotonic). No allocation unless the
  /// heap grows.
  void schedule(int64_t deadline_ns, TimerTarget* target, uint64_t token);

  /// Waits up to `max_wait_ns` (-1: no limit) for I/O, timers or a wake-up, and dispatches them.
  /// Returns the number of I/O events dispatched.
  int run_once(int64_t max_wait_ns = -1);

  /// Any thread: wakes the loop; it then calls the wake handler (if set) on its own thread.
  void wake();
  void set_wake_handler(TimerTarget* target) { wake_target_ = target; }

  size_t pending_timers() const { return heap_.size(); }
  /// How many times the timerfd has been set (each one a kernel timer reprogrammed).
  uint64_t timer_sets() const { return timer_sets_; }

 private:
  struct Timer {
    int64_t deadline_ns;
    TimerTarget* target;
    uint64_t token;
  };
  void arm(int64_t deadline_ns);
  /// Before epoll_wait: sets the timerfd if the earliest timer needs it; returns the timeout to
  /// wait with (0 when a timer is already due).
  int arm_for_sleep(int timeout_ms);
  void fire_due_timers();

  int epfd_ = -1;
  int timerfd_ = -1;
  int eventfd_ = -1;
  int64_t armed_ns_ = 0;  ///< deadline the timerfd is set to and has not yet been read at; 0: none
  uint64_t timer_sets_ = 0;
  std::vector<Timer> heap_;
  std::vector<epoll_event> events_;
  TimerTarget* wake_target_ = nullptr;
};

}  // namespace agentperf
