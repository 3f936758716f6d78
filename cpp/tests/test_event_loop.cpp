// EventLoop: timers fire in deadline order, not before their deadline, and wake() interrupts a wait.
#include <thread>
#include <vector>

#include "agentperf/clock.h"
#include "common/event_loop.h"
#include "agentperf/workload.h"
#include "testing.h"

using namespace agentperf;

namespace {
struct Recorder : TimerTarget {
  std::vector<std::pair<uint64_t, int64_t>> fired;  // (token, time)
  void on_timer(uint64_t token) override { fired.push_back({token, now_ns()}); }
};
}  // namespace

TEST(event_loop_timers_fire_in_order_and_not_early) {
  EventLoop loop;
  Recorder r;
  const int64_t t0 = now_ns();
  const int64_t offsets_ms[] = {30, 5, 20, 10, 0};
  for (uint64_t i = 0; i < 5; ++i) loop.schedule(t0 + offsets_ms[i] * kNsPerMs, &r, i);
  while (r.fired.size() < 5 && now_ns() - t0 < kNsPerS) loop.run_once(50 * kNsPerMs);
  CHECK_EQ(r.fired.size(), size_t{5});
  const uint64_t order[] = {4, 1, 3, 2, 0};
  for (size_t i = 0; i < r.fired.size() && i < 5; ++i) {
    CHECK_EQ(r.fired[i].first, order[i]);
    CHECK(r.fired[i].second >= t0 + offsets_ms[r.fired[i].first] * kNsPerMs);
  }
  CHECK_EQ(loop.pending_timers(), size_t{0});
}

TEST(event_loop_timer_fires_close_to_its_deadline) {
  // The timerfd is armed with an absolute nanosecond deadline: no 1 ms rounding of epoll_wait.
  EventLoop loop;
  Recorder r;
  const int64_t deadline = now_ns() + 3 * kNsPerMs + 300'000;  // 3.3 ms
  loop.schedule(deadline, &r, 7);
  while (r.fired.empty()) loop.run_once(-1);
  const int64_t late = r.fired[0].second - deadline;
  CHECK(late >= 0);
  CHECK_MSG(late < 2 * kNsPerMs, "fired " << late << " ns late");
}

TEST(event_loop_timer_scheduled_from_a_timer_runs) {
  EventLoop loop;
  struct Chain : TimerTarget {
    EventLoop* loop;
    int count = 0;
    void on_timer(uint64_t) override {
      if (++count < 3) loop->schedule(now_ns(), this, 0);
    }
  } chain;
  chain.loop = &loop;
  loop.schedule(now_ns(), &chain, 0);
  for (int i = 0; i < 10 && chain.count < 3; ++i) loop.run_once(10 * kNsPerMs);
  CHECK_EQ(chain.count, 3);
}

TEST(event_loop_sets_its_timerfd_only_when_a_sleep_needs_it) {
  EventLoop loop;
  Recorder r;
  const int64_t t0 = now_ns();
  loop.schedule(t0 + 10 * kNsPerS, &r, 1000);  // far off: not set until the loop first sleeps
  // Timers due at once (a request sent from outside a connection's callback) fire at the end of
  // the iteration, and no sleep needs the timerfd meanwhile.
  for (uint64_t i = 0; i < 200; ++i) {
    loop.schedule(now_ns(), &r, i);
    loop.run_once(-1);
  }
  CHECK_EQ(r.fired.size(), size_t{200});
  CHECK_EQ(loop.timer_sets(), uint64_t{0});
  // A near timer: set once, and it fires on time (not at the far one's deadline).
  const int64_t near = now_ns() + 2 * kNsPerMs;
  loop.schedule(near, &r, 500);
  while (r.fired.size() < 201) loop.run_once(-1);
  CHECK_EQ(loop.timer_sets(), uint64_t{1});
  CHECK_EQ(r.fired.back().first, uint64_t{500});
  CHECK(r.fired.back().second >= near && r.fired.back().second < t0 + 5 * kNsPerS);
  // The next sleep sets the far one; a timer due later still leaves it alone.
  loop.run_once(kNsPerMs);
  CHECK_EQ(loop.timer_sets(), uint64_t{2});
  loop.schedule(t0 + 20 * kNsPerS, &r, 2000);
  loop.run_once(kNsPerMs);
  CHECK_EQ(loop.timer_sets(), uint64_t{2});
  CHECK_EQ(r.fired.size(), size_t{201});
  CHECK_EQ(loop.pending_timers(), size_t{2});
}

TEST(event_loop_wake_interrupts_a_blocking_wait) {
  EventLoop loop;
  Recorder woken;
  loop.set_wake_handler(&woken);
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    loop.wake();
  });
  const int64_t t0 = now_ns();
  while (woken.fired.empty() && now_ns() - t0 < 5 * kNsPerS) loop.run_once(-1);
  t.join();
  CHECK_EQ(woken.fired.size(), size_t{1});
  CHECK(now_ns() - t0 < kNsPerS);
}

TEST(workload_finalize_rejects_bad_ranges) {
  auto make = [](uint32_t begin, uint32_t end, int32_t insert_at) {
    Workload w;
    Conversation c;
    c.fragments = {"{\"role\":\"user\",\"content\":\"a\"}", ",{\"role\":\"user\",\"content\":\"b\"}"};
    c.pieces = {0, 0, 1};
    c.turns.push_back(TurnSpec{begin, end, insert_at, 5, -1, 0});
    w.conversations.push_back(c);
    return w;
  };
  Workload ok = make(1, 3, 0);
  ok.finalize();
  CHECK_EQ(ok.conversations[0].turn_bytes[0], ok.conversations[0].fragments[0].size() + ok.conversations[0].fragments[1].size());
  for (auto [b, e, ins] : std::vector<std::tuple<uint32_t, uint32_t, int32_t>>{{2, 2, -1}, {0, 4, -1}, {0, 2, 3}}) {
    bool threw = false;
    try {
      Workload bad = make(b, e, ins);
      bad.finalize();
    } catch (const std::invalid_argument&) {
      threw = true;
    }
    CHECK_MSG(threw, "range [" << b << ", " << e << ") insert_at " << ins);
  }
  Workload empty;
  bool threw = false;
  try {
    empty.finalize();
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}
