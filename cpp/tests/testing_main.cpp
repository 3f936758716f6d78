#include <cstring>

#include "testing.h"

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  int ran = 0;
  for (const auto& t : agentperf_testing::registry()) {
    if (filter && !std::strstr(t.name, filter)) continue;
    int before = agentperf_testing::failures();
    t.fn();
    ++ran;
    std::cout << (agentperf_testing::failures() == before ? "ok   " : "FAIL ") << t.name << "\n";
  }
  std::cout << ran << " tests, " << agentperf_testing::failures() << " failed checks\n";
  return agentperf_testing::failures() == 0 && ran > 0 ? 0 : 1;
}
