// The one statistics module of quiclab: every benchmark (bench/h2, bench/h3,
// linkprobe), `quiclab bench` and the comparison take their medians,
// percentiles and intervals from here, so ratios are computed the same way
// everywhere. Order statistics (R-7 percentiles, as NumPy and R default),
// bootstrap and Wilson intervals. Hand-written: the formulas are a few lines
// each, and Debian's candidates (GSL: GPL, a C API over arrays; Boost.Accumulators:
// approximate streaming quantiles) would not make them shorter or more exact. Pure functions on vectors of samples; the
// bootstrap takes its seed explicitly so every report is reproducible.
#pragma once

#include <cstdint>
#include <optional>
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

/// Percentile bootstrap interval for a statistic of one sample: resamples with
/// replacement `resamples` times and returns the (alpha/2, 1-alpha/2) quantiles
/// of the statistic. nullopt for fewer than 2 samples.
std::optional<Interval> bootstrap_ci(std::span<const double> samples, double stat_percentile, double confidence,
                                     std::uint64_t seed, int resamples = 2000);

/// Bootstrap interval for the ratio of a percentile of b over the same
/// percentile of a (e.g. median(H3) / median(H2)), resampling both independently.
std::optional<Interval> bootstrap_ratio_ci(std::span<const double> a, std::span<const double> b, double stat_percentile,
                                           double confidence, std::uint64_t seed, int resamples = 2000);

/// Wilson score interval for a binomial proportion (successes out of n), in [0, 1].
Interval wilson_interval(std::uint64_t successes, std::uint64_t n, double confidence = 0.95);

}  // namespace quiclab::stats
