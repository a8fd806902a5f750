#include "bench/compare/stats.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
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

namespace {
// Samples from known distributions, drawn with Rng only (no std::*_distribution,
// whose sequences differ between standard libraries).
double normal(Rng& rng) {
  const double u1 = rng.uniform(), u2 = rng.uniform();
  return std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
}
struct Dist {
  const char* name;
  double true_median;
  double (*draw)(Rng&);
};
const Dist kDists[] = {
    {"normal(10, 2)", 10.0, [](Rng& r) { return 10 + 2 * normal(r); }},
    {"exponential(1)", std::log(2.0), [](Rng& r) { return -std::log(r.uniform()); }},
    {"lognormal(0, 1)", 1.0, [](Rng& r) { return std::exp(normal(r)); }},
};
}  // namespace

TEST_CASE("Rng: the same sequence on every standard library, unbiased bounded draws", "[stats]") {
  // std::mt19937_64's 10000th output for the default seed is fixed by the C++ standard.
  Rng rng(5489);
  for (int i = 0; i < 9999; ++i) rng.next();
  CHECK(rng.next() == 9981545732273789042ULL);
  Rng a(7), b(7);
  for (int i = 0; i < 100; ++i) CHECK(a.below(10) == b.below(10));
  std::vector<int> counts(6);
  Rng r(1);
  for (int i = 0; i < 60000; ++i) counts[r.below(6)]++;
  for (int c : counts) CHECK(std::abs(c - 10000) < 400);  // ~4 sigma
  for (int i = 0; i < 1000; ++i) {
    double u = r.uniform();
    CHECK(u > 0);
    CHECK(u < 1);
  }
}

TEST_CASE("order-statistic median interval: exact ranks, and 95 +- 2 % coverage on known distributions", "[stats]") {
  // n = 30: ranks 10 and 21, coverage 1 - 2 P(Bin(30, 1/2) <= 9) = 95.72 %.
  std::vector<double> v;
  for (int i = 1; i <= 30; ++i) v.push_back(i);
  auto ci = median_ci(v, 0.95);
  REQUIRE(ci);
  CHECK(ci->low_rank == 10);
  CHECK(ci->high_rank == 21);
  CHECK(ci->low == 10);
  CHECK(ci->high == 21);
  CHECK(ci->coverage == Approx(0.9572).margin(0.0001));
  CHECK_FALSE(median_ci(std::vector<double>{1, 2, 3, 4, 5}, 0.95));  // n = 5 cannot reach 95 %
  CHECK(median_ci(std::vector<double>{1, 2, 3, 4, 5, 6}, 0.95)->coverage == Approx(0.96875));

  for (const auto& d : kDists) {
    for (std::size_t n : {20u, 30u, 50u}) {
      Rng rng(1234 + n);
      int covered = 0;
      const int trials = 4000;
      double nominal = 0;
      for (int t = 0; t < trials; ++t) {
        std::vector<double> s(n);
        for (auto& x : s) x = d.draw(rng);
        auto c = median_ci(s, 0.95);
        REQUIRE(c);
        nominal = c->coverage;
        covered += c->low <= d.true_median && d.true_median <= c->high;
      }
      const double rate = static_cast<double>(covered) / trials;
      INFO(d.name << ", n = " << n << ": covered " << rate * 100 << " %, exact " << nominal * 100 << " %");
      CHECK(rate >= 0.93);
      CHECK(rate <= 0.97);
      CHECK(std::abs(rate - nominal) < 0.015);
    }
  }
}

TEST_CASE("paired ratio: the median of per-pair ratios with its order-statistic interval", "[stats]") {
  std::vector<double> h2, h3;
  for (int i = 0; i < 30; ++i) {
    const double base = 100 + 37 * (i % 7);  // the pair's shared fate
    h2.push_back(base);
    h3.push_back(base * (0.8 + 0.01 * (i % 5)));
  }
  auto r = paired_ratio(h2, h3);
  REQUIRE(r);
  CHECK(r->pairs == 30);
  CHECK(r->median == Approx(0.82));
  REQUIRE(r->ci);
  CHECK(r->ci->low >= 0.8);
  CHECK(r->ci->high <= 0.84);
  CHECK_FALSE(paired_ratio(std::vector<double>{0}, std::vector<double>{1}));
}

TEST_CASE("bootstrap median interval: its coverage on known distributions is measured, not assumed", "[stats]") {
  // The comparison's intervals are median_ci's (exact, distribution-free);
  // the bootstrap stays for the benchmarks' statistics. Its coverage at n = 50
  // was 95.2-96 % here (500 samples, 400 resamples each); it is held to
  // 95 +- 3 % so a change to the resampling that breaks it shows.
  for (const auto& d : kDists) {
    Rng rng(99);
    int covered = 0;
    const int trials = 500;
    for (int t = 0; t < trials; ++t) {
      std::vector<double> s(50);
      for (auto& x : s) x = d.draw(rng);
      auto c = bootstrap_ci(s, 50, 0.95, 1000 + static_cast<std::uint64_t>(t), 400);
      REQUIRE(c);
      covered += c->low <= d.true_median && d.true_median <= c->high;
    }
    const double rate = static_cast<double>(covered) / trials;
    INFO(d.name << ": bootstrap covered " << rate * 100 << " %");
    CHECK(rate >= 0.92);
    CHECK(rate <= 0.98);
  }
}

TEST_CASE("bimodality coefficient: two separated modes above 5/9, one mode below", "[stats]") {
  Rng rng(3);
  std::vector<double> one, two;
  for (int i = 0; i < 50; ++i) {
    one.push_back(500 + 20 * normal(rng));
    two.push_back((i % 2 ? 500 : 1500) + 20 * normal(rng));  // e.g. runs with and without an RTO
  }
  CHECK(*bimodality_coefficient(one) < kBimodalAbove);
  CHECK(*bimodality_coefficient(two) > kBimodalAbove);
  CHECK_FALSE(bimodality_coefficient(std::vector<double>{1, 2, 3}));
  CHECK_FALSE(bimodality_coefficient(std::vector<double>(10, 4.0)));
}
