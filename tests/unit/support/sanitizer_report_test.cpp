// The test suite's own check for sanitizer reports in child output
// (tests/sanitizer_report.hpp): it must see each kind, and nothing else.
#include "tests/sanitizer_report.hpp"

#include <catch2/catch.hpp>

using quiclab::test::sanitizer_report;

TEST_CASE("test support: sanitizer reports in child output are found", "[support]") {
  CHECK_FALSE(sanitizer_report("listening h2 tcp 127.0.0.1:1\nall fine\n"));
  CHECK_FALSE(sanitizer_report(""));
  auto leak = sanitizer_report("line one\n==4242==ERROR: LeakSanitizer: detected memory leaks\n    #0 0x1 in malloc\n");
  REQUIRE(leak);
  CHECK(leak->rfind("==4242==ERROR: LeakSanitizer", 0) == 0);
  CHECK(sanitizer_report("==1==ERROR: AddressSanitizer: heap-use-after-free on address"));
  CHECK(sanitizer_report("transport/h2/server.cpp:10:5: runtime error: signed integer overflow"));
  CHECK(sanitizer_report("WARNING: ThreadSanitizer: data race"));
}
