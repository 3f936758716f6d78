// Follows the HTTP/2 frame headers through a connection's received bytes, read after read, so that
// the session can prefetch what each frame will touch (the stream's agent) before nghttp2 parses
// the read. Only the 9-byte headers' length, type, flags and stream id are read (RFC 9113 4.1);
// nothing is checked or trusted here: nghttp2 parses and checks every byte afterwards, and a walk
// led astray by a broken peer only prefetches the wrong memory until nghttp2 ends the connection.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace agentperf {

class FrameWalk {
 public:
  static constexpr size_t kHeaderBytes = 9;

  /// The next `n` received bytes (the first call gets the connection's first byte). Calls
  /// on_header(type, flags, stream_id, payload_length) for each frame header completed by them, in
  /// order, a header cut between reads included (reported by the read that completes it).
  template <class F>
  void feed(const uint8_t* p, size_t n, F&& on_header) {
    const uint8_t* const e = p + n;
    while (p < e) {
      if (skip_ > 0) {  // the rest of the current frame's payload
        const size_t k = static_cast<size_t>(std::min<uint64_t>(skip_, static_cast<uint64_t>(e - p)));
        p += k;
        skip_ -= k;
        continue;
      }
      const uint8_t* h = p;
      if (have_ > 0 || static_cast<size_t>(e - p) < kHeaderBytes) {  // a header cut by a read's end
        const size_t k = std::min(kHeaderBytes - have_, static_cast<size_t>(e - p));
        std::memcpy(head_ + have_, p, k);
        have_ += k;
        p += k;
        if (have_ < kHeaderBytes) return;
        have_ = 0;
        h = head_;
      } else {
        p += kHeaderBytes;
      }
      const uint32_t length = uint32_t{h[0]} << 16 | uint32_t{h[1]} << 8 | h[2];
      const int32_t id = static_cast<int32_t>((uint32_t{h[5]} & 0x7f) << 24 | uint32_t{h[6]} << 16 | uint32_t{h[7]} << 8 | h[8]);
      on_header(h[3], h[4], id, length);
      skip_ = length;
    }
  }

 private:
  uint64_t skip_ = 0;               ///< payload bytes of the current frame not yet received
  uint8_t head_[kHeaderBytes] = {};  ///< a frame header cut by the end of a read
  size_t have_ = 0;                 ///< bytes of head_ received
};

}  // namespace agentperf
