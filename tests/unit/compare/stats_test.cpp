#include "bench/compare/stats.hpp"

#include <catch2/catch.hpp>
#include <vector>

using namespace quiclab::stats;

TEST_CASE("percentiles match NumPy's linear definition", "[stats]") {
  std::vector<double> v{15, 20, 35, 40, 50};
  CHECK(*median(v) == Approx(35));
  CHECK(*percentile(v, 0) == Approx(15));
  CHECK(*percentile(v, 100) == Approx(50));
  CHECK(*percentile(v, 40) == Approx(29));  // numpy.percentile([15,20,35,40,50], 40) == 29.0
  CHECK(*percentile(v, 95) == Approx(48));  // numpy: 48.0
  std::vector<double> even{4, 1, 3, 2};
  CHECK(*median(even) == Approx(2.5));
  CHECK_FALSE(median(std::vector<double>{}));
  CHECK(*median(std::vector<double>{7}) == Approx(7));
}

TEST_CASE("bootstrap interval covers the median and is reproducible", "[stats]") {
  std::vector<double> v;
  for (int i = 1; i <= 101; ++i) v.push_back(i);  // median 51
  auto ci = bootstrap_ci(v, 50, 0.95, 42);
  REQUIRE(ci);
  CHECK(ci->low < 51);
  CHECK(ci->high > 51);
  CHECK(ci->low > 35);  // a 95 % interval for the median of 101 points is about ±10
  CHECK(ci->high < 67);
  auto again = bootstrap_ci(v, 50, 0.95, 42);
  CHECK(again->low == ci->low);
  CHECK(again->high == ci->high);
  std::vector<double> constant(30, 5.0);
  auto c = bootstrap_ci(constant, 50, 0.95, 1);
  CHECK(c->low == Approx(5));
  CHECK(c->high == Approx(5));
  CHECK_FALSE(bootstrap_ci(std::vector<double>{1}, 50, 0.95, 1));
}

TEST_CASE("bootstrap ratio interval", "[stats]") {
  std::vector<double> a, b;
  for (int i = 0; i < 40; ++i) {
    a.push_back(100 + i % 5);
    b.push_back(50 + i % 5);
  }
  auto r = bootstrap_ratio_ci(a, b, 50, 0.95, 7);
  REQUIRE(r);
  CHECK(r->low > 0.45);
  CHECK(r->high < 0.56);
  CHECK(r->low <= r->high);
}

TEST_CASE("Wilson interval for a binomial proportion", "[stats]") {
  auto w = wilson_interval(10, 1000, 0.95);  // 1 %: [0.544 %, 1.83 %]
  CHECK(w.low == Approx(0.00544).margin(0.0001));
  CHECK(w.high == Approx(0.0183).margin(0.0001));
  auto zero = wilson_interval(0, 100);
  CHECK(zero.low == 0);
  CHECK(zero.high == Approx(0.037).margin(0.001));
  auto none = wilson_interval(0, 0);
  CHECK(none.low == 0);
  CHECK(none.high == 1);
}
