// Kernel receive timestamps: when a response's bytes reached the client's socket.
//
// A user-space stamp is taken after the event loop wakes and read() returns, so any time the client
// spends busy (other sockets, other processes on its cores) is added to TTFT and ITL. The kernel
// stamps every packet as it arrives (SO_TIMESTAMPNS: the receive path's software stamp, taken
// before the client runs at all); recvmsg() returns it beside the bytes. Over TCP the stamp that
// comes with a read is that of the last segment the read consumed, so bytes that arrived earlier
// in the same read are stamped no earlier than they arrived, and never later than the user-space
// stamp.
//
// The kernel's stamp is CLOCK_REALTIME. It is turned into the engine's one clock (CLOCK_MONOTONIC)
// at the read: both clocks are read together right after recvmsg() returns (realtime first, so the
// gap between the readings can only move a stamp later, never before its bytes arrived), so
//   delay       = realtime_now - kernel_realtime   (the time the bytes waited for the client)
//   kernel_mono = monotonic_now - delay
// Only the difference of two realtime readings a few microseconds to milliseconds apart is used,
// so the realtime clock's offset never enters a measurement; a clock step (settimeofday, an NTP
// step) landing between the packet and the read would, and such a delay is clamped to [0, 10 s]
// (beyond that the stamp is dropped and the read counts as unstamped).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace agentperf {

/// The stamps of one read.
struct ReadStamp {
  int64_t at_ns = 0;    ///< when the bytes reached the socket (the kernel's stamp), else user_ns
  int64_t user_ns = 0;  ///< when the client saw them (CLOCK_MONOTONIC after recvmsg returned)
  bool kernel = false;  ///< at_ns is the kernel's stamp
  int64_t delay_ns() const { return kernel ? user_ns - at_ns : 0; }
};

/// Asks the kernel to stamp what `fd` receives (SO_TIMESTAMPNS). False when it refuses; reads then
/// fall back to user-space stamps.
bool enable_receive_stamps(int fd);

/// The kernel switches its receive stamping on a moment after the first socket of a process asks
/// for it (deferred work), and off again when the last such socket closes; a TCP read in between
/// comes back unstamped. This holds a loopback TCP pair with stamps on for the rest of the process
/// and waits (at most `wait_ns`, once per process) until a byte sent over it comes back stamped, so
/// an engine's first responses are stamped too. False when stamping did not come on in time.
bool keep_receive_stamps_on(int64_t wait_ns);

/// recv() that also returns the read's stamps (as read(): bytes, 0 at EOF, -1 with errno).
ssize_t read_stamped(int fd, char* buf, size_t n, ReadStamp* stamp);

}  // namespace agentperf
