#include "client/record_buffer.h"

#include <algorithm>

namespace agentperf {

void RecordBuffer::publish() {
  if (batch_.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  if (shared_.empty() && batch_.size() <= limit_) {
    shared_.swap(batch_);  // keeps both buffers' capacity in play: no copy at all
    batch_.clear();
    return;
  }
  // Fill up to the limit, then overwrite the oldest (ring).
  size_t room = limit_ > shared_.size() ? limit_ - shared_.size() : 0;
  size_t take = std::min(room, batch_.size());
  shared_.insert(shared_.end(), batch_.begin(), batch_.begin() + static_cast<ptrdiff_t>(take));
  i = take;
  uint64_t dropped = 0;
  if (limit_ == 0) {
    dropped = batch_.size();
  } else {
    for (; i < batch_.size(); ++i) {
      shared_[head_] = batch_[i];
      head_ = head_ + 1 == limit_ ? 0 : head_ + 1;
      ++dropped;
    }
  }
  if (dropped) dropped_.add(dropped);
  batch_.clear();
}

void RecordBuffer::drain_into(std::vector<RequestRecord>& out) {
  std::vector<RequestRecord> taken;
  size_t head;
  {
    std::lock_guard<std::mutex> lock(mu_);
    taken.swap(shared_);
    head = head_;
    head_ = 0;
  }
  if (taken.empty()) return;
  if (out.empty() && head == 0) {
    out.swap(taken);
    return;
  }
  out.insert(out.end(), taken.begin() + static_cast<ptrdiff_t>(head), taken.end());
  out.insert(out.end(), taken.begin(), taken.begin() + static_cast<ptrdiff_t>(head));
}

}  // namespace agentperf
