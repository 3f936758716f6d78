// A worker's finished-request records, on their way to readers.
//
// One producer (the worker thread) and any number of drainers. The producer appends each record to
// its private batch with no synchronisation at all (add()); once per event-loop iteration it
// publishes the batch (publish()): a short lock, then the batch is copied into the shared buffer
// (or swapped in whole when that is empty). A drainer (drain_into()) swaps the whole shared buffer
// out under the same lock and puts it in order outside it. So no lock per record, and the lock is
// held for O(records of one loop iteration) by the producer and O(1) by a drainer.
//
// Bound: at most `limit` undrained records. Past it the shared buffer becomes a ring and each new
// record overwrites the oldest undrained one, counted in dropped().
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "agentperf/record.h"
#include "common/single_writer_counter.h"

namespace agentperf {

class RecordBuffer {
 public:
  explicit RecordBuffer(size_t limit) : limit_(limit) {}

  /// Producer thread only: no lock, no syscall; an allocation only when the batch grows.
  void add(const RequestRecord& rec) { batch_.push_back(rec); }
  /// Producer thread only: makes the records added so far visible to drain_into().
  void publish();
  /// Any thread: appends every published record (oldest first) to `out` and forgets them.
  void drain_into(std::vector<RequestRecord>& out);
  /// Any thread: records overwritten before anyone drained them.
  uint64_t dropped() const { return dropped_.get(); }

 private:
  const size_t limit_;
  std::vector<RequestRecord> batch_;  // producer only

  std::mutex mu_;                      // guards shared_ and head_
  std::vector<RequestRecord> shared_;  // published, undrained; a ring once it holds limit_ records
  size_t head_ = 0;                    // ring: index of the oldest record (0 until it wraps)
  SingleWriterCounter dropped_;        // written under mu_ by the producer
};

}  // namespace agentperf
