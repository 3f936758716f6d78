// Kernel receive stamps over a real loopback TCP pair: once keep_receive_stamps_on() has returned,
// the very first byte a new socket reads comes with the kernel's stamp, never after the read.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agentperf/clock.h"
#include "client/read_stamp.h"
#include "testing.h"

namespace {

using namespace agentperf;

// A connected loopback pair: {sending end, receiving end}, or -1s.
void loopback_pair(int* sender, int* receiver) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(listener, reinterpret_cast<sockaddr*>(&addr), len);
  ::listen(listener, 1);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  *sender = ::socket(AF_INET, SOCK_STREAM, 0);
  ::connect(*sender, reinterpret_cast<sockaddr*>(&addr), len);
  *receiver = ::accept(listener, nullptr, nullptr);
  ::close(listener);
}

}  // namespace

TEST(read_stamp_first_read_of_a_new_socket_is_kernel_stamped) {
  CHECK(keep_receive_stamps_on(2 * kNsPerS));
  for (int round = 0; round < 20; ++round) {  // sockets come and go; stamping stays on
    int sender = -1, receiver = -1;
    loopback_pair(&sender, &receiver);
    CHECK(sender >= 0 && receiver >= 0);
    CHECK(enable_receive_stamps(receiver));
    const int64_t before = now_ns();
    CHECK(::send(sender, "x", 1, 0) == 1);
    char byte = 0;
    ReadStamp stamp;
    CHECK(read_stamped(receiver, &byte, 1, &stamp) == 1);
    CHECK(byte == 'x');
    CHECK(stamp.kernel);
    CHECK(before <= stamp.at_ns + kNsPerMs && stamp.at_ns <= stamp.user_ns);  // 1 ms: realtime vs monotonic read order
    ::close(sender);
    ::close(receiver);
  }
}

TEST(read_stamp_without_asking_the_read_is_user_stamped) {
  int sender = -1, receiver = -1;
  loopback_pair(&sender, &receiver);
  CHECK(::send(sender, "y", 1, 0) == 1);
  char byte = 0;
  ReadStamp stamp;
  CHECK(read_stamped(receiver, &byte, 1, &stamp) == 1);
  CHECK(!stamp.kernel && stamp.at_ns == stamp.user_ns && stamp.delay_ns() == 0);
  ::close(sender);
  ::close(receiver);
}
