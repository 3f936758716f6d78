// The per-worker record buffer: order, the bound (oldest dropped), and a producer racing a drainer.
#include <atomic>
#include <thread>
#include <vector>

#include "client/record_buffer.h"
#include "testing.h"

using namespace agentperf;

namespace {
RequestRecord rec(int64_t n) {
  RequestRecord r{};
  r.agent_id = n;
  return r;
}
std::vector<int64_t> ids(const std::vector<RequestRecord>& v) {
  std::vector<int64_t> out;
  for (const auto& r : v) out.push_back(r.agent_id);
  return out;
}
}  // namespace

TEST(record_buffer_publishes_in_order_and_drains_once) {
  RecordBuffer b(100);
  b.add(rec(1));
  b.add(rec(2));
  std::vector<RequestRecord> out;
  b.drain_into(out);
  CHECK(out.empty());  // not published yet
  b.publish();
  b.add(rec(3));
  b.publish();
  b.drain_into(out);
  CHECK(ids(out) == (std::vector<int64_t>{1, 2, 3}));
  out.clear();
  b.drain_into(out);
  CHECK(out.empty());
  CHECK_EQ(b.dropped(), uint64_t{0});
}

TEST(record_buffer_drops_the_oldest_beyond_its_limit) {
  RecordBuffer b(4);
  for (int i = 1; i <= 3; ++i) b.add(rec(i));
  b.publish();
  for (int i = 4; i <= 10; ++i) b.add(rec(i));
  b.publish();
  std::vector<RequestRecord> out{rec(0)};
  b.drain_into(out);
  CHECK(ids(out) == (std::vector<int64_t>{0, 7, 8, 9, 10}));
  CHECK_EQ(b.dropped(), uint64_t{6});
  // After a drain the buffer starts afresh.
  for (int i = 11; i <= 16; ++i) b.add(rec(i));
  b.publish();
  out.clear();
  b.drain_into(out);
  CHECK(ids(out) == (std::vector<int64_t>{13, 14, 15, 16}));
  CHECK_EQ(b.dropped(), uint64_t{8});

  RecordBuffer none(0);
  none.add(rec(1));
  none.publish();
  out.clear();
  none.drain_into(out);
  CHECK(out.empty());
  CHECK_EQ(none.dropped(), uint64_t{1});
}

TEST(record_buffer_loses_nothing_to_a_concurrent_drainer) {
  RecordBuffer b(1 << 20);
  constexpr int kRecords = 200000;
  std::atomic<bool> done{false};
  std::thread producer([&] {
    for (int i = 0; i < kRecords; ++i) {
      b.add(rec(i));
      if (i % 7 == 0) b.publish();
    }
    b.publish();
    done.store(true);
  });
  std::vector<RequestRecord> out;
  while (!done.load()) b.drain_into(out);
  producer.join();
  b.drain_into(out);
  CHECK_EQ(out.size(), size_t{kRecords});
  bool ordered = true;
  for (size_t i = 0; i < out.size(); ++i) ordered &= out[i].agent_id == static_cast<int64_t>(i);
  CHECK(ordered);
}
