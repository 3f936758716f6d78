#include "common/event_loop.h"

#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "agentperf/clock.h"
#include "common/prefetch.h"

namespace agentperf {

namespace {
// Tags for the loop's own descriptors in epoll_event.data.ptr (never valid handler addresses).
IoHandler* const kTimerTag = reinterpret_cast<IoHandler*>(uintptr_t{1});
IoHandler* const kWakeTag = reinterpret_cast<IoHandler*>(uintptr_t{2});

struct Later {
  template <class T>
  bool operator()(const T& a, const T& b) const { return a.deadline_ns > b.deadline_ns; }
};
}  // namespace

EventLoop::EventLoop() : events_(1024) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  timerfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  eventfd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || timerfd_ < 0 || eventfd_ < 0) {
    int err = errno;
    if (epfd_ >= 0) close(epfd_);
    if (timerfd_ >= 0) close(timerfd_);
    if (eventfd_ >= 0) close(eventfd_);
    throw std::system_error(err, std::generic_category(), "event loop descriptors");
  }
  add(timerfd_, EPOLLIN, kTimerTag);
  add(eventfd_, EPOLLIN, kWakeTag);
}

EventLoop::~EventLoop() {
  close(epfd_);
  close(timerfd_);
  close(eventfd_);
}

int EventLoop::add(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

int EventLoop::modify(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  return epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -errno;
}

int EventLoop::remove(int fd) { return epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr) == 0 ? 0 : -errno; }

void EventLoop::arm(int64_t deadline_ns) {
  if (deadline_ns == armed_ns_) return;
  itimerspec its{};
  if (deadline_ns > 0) {
    its.it_value.tv_sec = deadline_ns / kNsPerS;
    its.it_value.tv_nsec = deadline_ns % kNsPerS;
  }
  timerfd_settime(timerfd_, TFD_TIMER_ABSTIME, &its, nullptr);
  ++timer_sets_;
  armed_ns_ = deadline_ns;
}

void EventLoop::schedule(int64_t deadline_ns, TimerTarget* target, uint64_t token) {
  if (deadline_ns <= 0) deadline_ns = 1;
  heap_.push_back({deadline_ns, target, token});
  std::push_heap(heap_.begin(), heap_.end(), Later{});
}

int EventLoop::arm_for_sleep(int timeout_ms) {
  if (heap_.empty()) return timeout_ms;
  const int64_t front = heap_.front().deadline_ns;
  if (armed_ns_ != 0 && armed_ns_ <= front) return timeout_ms;  // the timerfd goes off by then
  if (front <= now_ns()) return 0;  // already due: no sleep, and no timerfd to set
  arm(front);
  return timeout_ms;
}

void EventLoop::fire_due_timers() {
  int64_t now = now_ns();
  while (!heap_.empty() && heap_.front().deadline_ns <= now) {
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    Timer t = heap_.back();
    heap_.pop_back();
    t.target->on_timer(t.token);  // may schedule more timers
    if (heap_.empty() || heap_.front().deadline_ns > now) now = now_ns();
  }
}

int EventLoop::run_once(int64_t max_wait_ns) {
  int timeout_ms = max_wait_ns < 0 ? -1 : static_cast<int>((max_wait_ns + kNsPerMs - 1) / kNsPerMs);
  timeout_ms = arm_for_sleep(timeout_ms);
  // The raw system call: glibc's epoll_wait() is a thread cancellation point and toggles the
  // thread's cancellation state around every call; the loop's threads are never cancelled.
  int n = static_cast<int>(::syscall(SYS_epoll_wait, epfd_, events_.data(), static_cast<int>(events_.size()), timeout_ms));
  if (n < 0) return 0;  // EINTR
  // Each ready handler is another connection, cold by now: the lines around every one are fetched
  // at once, so that their misses overlap instead of coming one handler at a time. Around, not
  // from: a handler is a base inside a larger object (a socket connection's state lies on both
  // sides of its IoHandler part).
  for (int i = 0; i < n; ++i) {
    if (events_[i].data.ptr == kTimerTag || events_[i].data.ptr == kWakeTag) continue;
    const char* h = static_cast<const char*>(events_[i].data.ptr);
    __builtin_prefetch(h - kCacheLineBytes);
    __builtin_prefetch(h);
    __builtin_prefetch(h + kCacheLineBytes);
  }
  int dispatched = 0;
  bool timers = false, woken = false;
  for (int i = 0; i < n; ++i) {
    IoHandler* h = static_cast<IoHandler*>(events_[i].data.ptr);
    if (h == kTimerTag) {
      uint64_t expirations;
      [[maybe_unused]] ssize_t r = read(timerfd_, &expirations, sizeof expirations);
      timers = true;
      armed_ns_ = 0;  // it went off: nothing is set any more
    } else if (h == kWakeTag) {
      uint64_t v;
      [[maybe_unused]] ssize_t r = read(eventfd_, &v, sizeof v);
      woken = true;
    } else {
      h->on_io(events_[i].events);
      ++dispatched;
    }
  }
  if (n == static_cast<int>(events_.size())) events_.resize(events_.size() * 2);
  if (woken && wake_target_) wake_target_->on_timer(0);
  if (timers || (!heap_.empty() && heap_.front().deadline_ns <= now_ns())) fire_due_timers();
  return dispatched;
}

void EventLoop::wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t r = write(eventfd_, &one, sizeof one);
}

}  // namespace agentperf
