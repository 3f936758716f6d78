// A minimal test harness for the C++ unit tests: TEST(name) { CHECK(...); CHECK_EQ(a, b); }.
// Each test registers itself; main() (testing_main.cpp) runs all, or those whose name contains
// argv[1], and exits non-zero when any check failed.
#pragma once

#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace agentperf_testing {

struct TestCase {
  const char* name;
  std::function<void()> fn;
};

inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}
inline int& failures() {
  static int f = 0;
  return f;
}
struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

inline void report_failure(const char* file, int line, const std::string& what) {
  ++failures();
  std::cerr << file << ":" << line << ": FAILED: " << what << "\n";
}

}  // namespace agentperf_testing

#define AP_CONCAT2(a, b) a##b
#define AP_CONCAT(a, b) AP_CONCAT2(a, b)
#define TEST(name)                                                                              \
  static void name();                                                                           \
  static ::agentperf_testing::Registrar AP_CONCAT(registrar_, name)(#name, name);               \
  static void name()

#define CHECK(cond)                                                                             \
  do {                                                                                          \
    if (!(cond)) ::agentperf_testing::report_failure(__FILE__, __LINE__, #cond);                \
  } while (0)

#define CHECK_EQ(a, b)                                                                          \
  do {                                                                                          \
    auto&& ap_a = (a);                                                                          \
    auto&& ap_b = (b);                                                                          \
    if (!(ap_a == ap_b)) {                                                                      \
      std::ostringstream ap_os;                                                                 \
      ap_os << #a " == " #b " (" << ap_a << " vs " << ap_b << ")";                              \
      ::agentperf_testing::report_failure(__FILE__, __LINE__, ap_os.str());                     \
    }                                                                                           \
  } while (0)

#define CHECK_MSG(cond, msg)                                                                    \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::ostringstream ap_os;                                                                 \
      ap_os << #cond << ": " << msg;                                                            \
      ::agentperf_testing::report_failure(__FILE__, __LINE__, ap_os.str());                     \
    }                                                                                           \
  } while (0)
