// The one statistics module of quiclab: every benchmark (bench/h2, bench/h3,
// linkprobe), `quiclab bench` and the comparison take their medians,
// percentiles and intervals from here, so ratios are computed the same way
// everywhere. Order statistics (R-7 percentiles, as NumPy and R default),
// bootstrap and Wilson intervals. Hand-written: the formulas are a few lines
// each, and Debian's candidates (GSL: GPL, a C API over arrays; Boost.Accumulators:
// approximate streaming quantiles) would not make them shorter or more exact. Pure functions on vectors of samples; the
// bootstrap takes its seed explicitly so every report is reproducible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace quiclab::stats {

/// The p-th percentile (0 <= p <= 100) by linear interpolation between closest
/// ranks (the "R-7" / NumPy default definition). nullopt for no samples.
std::optional<double> percentile(std::span<const double> samples, double p);
inline std::optional<double> median(std::span<const double> samples) { return percentile(samples, 50); }

struct Interval {
  double low = 0;
  double high = 0;
};

/// A distribution-free interval for the median: the order statistics
/// x(l) and x(n+1-l) of the sorted sample, with l the largest rank whose
/// two-sided binomial tail 2 P(Bin(n, 1/2) <= l-1) stays within 1 - confidence.
/// It covers the true median of any continuous distribution with probability
/// `coverage` >= confidence (exactly that, not asymptotically). nullopt when
/// n is too small to reach the confidence at all (n < 6 for 95 %).
struct OrderInterval {
  double low = 0, high = 0;
  std::size_t low_rank = 0, high_rank = 0;  ///< 1-based ranks in the sorted sample
  double coverage = 0;                      ///< the exact coverage of these ranks
};
std::optional<OrderInterval> median_ci(std::span<const double> samples, double confidence = 0.95);

/// The median of paired ratios b_i / a_i (pairs with a_i <= 0 left out) and
/// its order-statistic interval: with common random numbers run i of both
/// protocols met the same losses, so the pairs carry the comparison.
struct PairedRatio {
  double median = 0;
  std::optional<OrderInterval> ci;
  std::size_t pairs = 0;
};
std::optional<PairedRatio> paired_ratio(std::span<const double> a, std::span<const double> b, double confidence = 0.95);

/// The RNG behind the bootstrap and the simulations: std::mt19937_64 (its
/// sequence is fixed by the standard) with our own bounded and real draws,
/// since std::uniform_int_distribution and friends differ between standard
/// libraries, which would move every interval on another machine.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : gen_(seed) {}
  std::uint64_t next() { return gen_(); }
  /// Uniform in [0, n) without modulo bias (rejection). n > 0.
  std::uint64_t below(std::uint64_t n);
  /// Uniform in (0, 1): 53 random bits, never 0.
  double uniform();

 private:
  std::mt19937_64 gen_;
};

/// Percentile bootstrap interval for a statistic of one sample: resamples with
/// replacement `resamples` times and returns the (alpha/2, 1-alpha/2) quantiles
/// of the statistic. nullopt for fewer than 2 samples.
std::optional<Interval> bootstrap_ci(std::span<const double> samples, double stat_percentile, double confidence,
                                     std::uint64_t seed, int resamples = 2000);

/// Bootstrap interval for the ratio of a percentile of b over the same
/// percentile of a (e.g. median(H3) / median(H2)), resampling both independently.
std::optional<Interval> bootstrap_ratio_ci(std::span<const double> a, std::span<const double> b, double stat_percentile,
                                           double confidence, std::uint64_t seed, int resamples = 2000);

/// Sarle's bimodality coefficient (g^2 + 1) / (k + 3 (n-1)^2 / ((n-2)(n-3)))
/// with g the sample skewness and k the sample excess kurtosis; above 5/9
/// (the uniform distribution's value) a sample is taken as bimodal. nullopt
/// below 4 samples or for a constant sample.
std::optional<double> bimodality_coefficient(std::span<const double> samples);
inline constexpr double kBimodalAbove = 5.0 / 9.0;

/// Wilson score interval for a binomial proportion (successes out of n), in [0, 1].
Interval wilson_interval(std::uint64_t successes, std::uint64_t n, double confidence = 0.95);

}  // namespace quiclab::stats
