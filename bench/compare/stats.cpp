#include "bench/compare/stats.hpp"

#include <algorithm>
#include <cmath>

namespace quiclab::stats {

namespace {
double sorted_percentile(const std::vector<double>& s, double p) {
  if (s.size() == 1) return s[0];
  double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(s.size() - 1);
  auto lo = static_cast<std::size_t>(std::floor(rank));
  auto hi = std::min(lo + 1, s.size() - 1);
  double frac = rank - static_cast<double>(lo);
  return s[lo] + (s[hi] - s[lo]) * frac;
}

// Inverse of the standard normal CDF by bisection on erfc; precise enough for
// confidence levels, and avoids a hand-written rational approximation.
double normal_quantile(double q) {
  double lo = -10, hi = 10;
  for (int i = 0; i < 200; ++i) {
    double mid = (lo + hi) / 2;
    double cdf = 0.5 * std::erfc(-mid / std::sqrt(2.0));
    (cdf < q ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

std::vector<double> resample_stat(std::span<const double> samples, double p, Rng& rng, int n) {
  std::vector<double> stats;
  stats.reserve(static_cast<std::size_t>(n));
  std::vector<double> draw(samples.size());
  for (int i = 0; i < n; ++i) {
    for (auto& d : draw) d = samples[rng.below(samples.size())];
    std::sort(draw.begin(), draw.end());
    stats.push_back(sorted_percentile(draw, p));
  }
  return stats;
}
// log of n choose k, for binomial tails without overflow.
double log_choose(std::size_t n, std::size_t k) {
  return std::lgamma(static_cast<double>(n) + 1) - std::lgamma(static_cast<double>(k) + 1) -
         std::lgamma(static_cast<double>(n - k) + 1);
}
}  // namespace

std::uint64_t Rng::below(std::uint64_t n) {
  // Draws above the largest multiple of n are redrawn: every residue equally likely.
  const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  std::uint64_t x;
  do x = next();
  while (x >= limit);
  return x % n;
}

double Rng::uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }

std::optional<OrderInterval> median_ci(std::span<const double> samples, double confidence) {
  const std::size_t n = samples.size();
  if (n == 0) return std::nullopt;
  const double alpha = 1 - confidence;
  // tail(l) = P(Bin(n, 1/2) <= l - 1); the interval [x(l), x(n+1-l)] misses the
  // median with probability 2 tail(l).
  double tail = 0;
  std::size_t best = 0;
  double best_tail = 0;
  for (std::size_t l = 1; l <= (n + 1) / 2; ++l) {
    tail += std::exp(log_choose(n, l - 1) - static_cast<double>(n) * std::log(2.0));
    if (2 * tail > alpha) break;
    best = l;
    best_tail = tail;
  }
  if (best == 0) return std::nullopt;
  std::vector<double> s(samples.begin(), samples.end());
  std::sort(s.begin(), s.end());
  return OrderInterval{s[best - 1], s[n - best], best, n + 1 - best, 1 - 2 * best_tail};
}

std::optional<PairedRatio> paired_ratio(std::span<const double> a, std::span<const double> b, double confidence) {
  std::vector<double> r;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (a[i] > 0) r.push_back(b[i] / a[i]);
  }
  if (r.empty()) return std::nullopt;
  return PairedRatio{*median(r), median_ci(r, confidence), r.size()};
}

std::optional<double> percentile(std::span<const double> samples, double p) {
  if (samples.empty()) return std::nullopt;
  std::vector<double> s(samples.begin(), samples.end());
  std::sort(s.begin(), s.end());
  return sorted_percentile(s, p);
}

std::optional<Interval> bootstrap_ci(std::span<const double> samples, double stat_percentile, double confidence,
                                     std::uint64_t seed, int resamples) {
  if (samples.size() < 2 || resamples < 10) return std::nullopt;
  Rng rng(seed);
  auto stats = resample_stat(samples, stat_percentile, rng, resamples);
  std::sort(stats.begin(), stats.end());
  double alpha = (1 - confidence) / 2 * 100;
  return Interval{sorted_percentile(stats, alpha), sorted_percentile(stats, 100 - alpha)};
}

std::optional<Interval> bootstrap_ratio_ci(std::span<const double> a, std::span<const double> b, double stat_percentile,
                                           double confidence, std::uint64_t seed, int resamples) {
  if (a.size() < 2 || b.size() < 2 || resamples < 10) return std::nullopt;
  Rng rng(seed);
  auto sa = resample_stat(a, stat_percentile, rng, resamples);
  auto sb = resample_stat(b, stat_percentile, rng, resamples);
  std::vector<double> ratios;
  ratios.reserve(sa.size());
  for (std::size_t i = 0; i < sa.size(); ++i) {
    if (sa[i] > 0) ratios.push_back(sb[i] / sa[i]);
  }
  if (ratios.size() < 10) return std::nullopt;
  std::sort(ratios.begin(), ratios.end());
  double alpha = (1 - confidence) / 2 * 100;
  return Interval{sorted_percentile(ratios, alpha), sorted_percentile(ratios, 100 - alpha)};
}

std::optional<double> bimodality_coefficient(std::span<const double> samples) {
  const std::size_t n = samples.size();
  if (n < 4) return std::nullopt;
  const double nn = static_cast<double>(n);
  double mean = 0;
  for (double x : samples) mean += x;
  mean /= nn;
  double m2 = 0, m3 = 0, m4 = 0;
  for (double x : samples) {
    const double d = x - mean;
    m2 += d * d;
    m3 += d * d * d;
    m4 += d * d * d * d;
  }
  m2 /= nn;
  m3 /= nn;
  m4 /= nn;
  if (m2 <= 0) return std::nullopt;
  // Bias-corrected sample skewness and excess kurtosis (as SAS and R's e1071 type 2).
  const double g1 = m3 / std::pow(m2, 1.5);
  const double skew = g1 * std::sqrt(nn * (nn - 1)) / (nn - 2);
  const double g2 = m4 / (m2 * m2) - 3;
  const double kurt = (nn - 1) / ((nn - 2) * (nn - 3)) * ((nn + 1) * g2 + 6);
  return (skew * skew + 1) / (kurt + 3 * (nn - 1) * (nn - 1) / ((nn - 2) * (nn - 3)));
}

Interval wilson_interval(std::uint64_t successes, std::uint64_t n, double confidence) {
  if (n == 0) return {0, 1};
  double z = normal_quantile(1 - (1 - confidence) / 2);
  double nn = static_cast<double>(n);
  double phat = static_cast<double>(successes) / nn;
  double denom = 1 + z * z / nn;
  double center = (phat + z * z / (2 * nn)) / denom;
  double half = z * std::sqrt(phat * (1 - phat) / nn + z * z / (4 * nn * nn)) / denom;
  // Exact ends when nothing (or everything) succeeded, not 1e-17 off.
  return {successes == 0 ? 0.0 : std::max(0.0, center - half), successes == n ? 1.0 : std::min(1.0, center + half)};
}

}  // namespace quiclab::stats
