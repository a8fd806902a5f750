// LinkConfig: what one direction of an emulated link does to packets (loss,
// queue, rate, delay, jitter, outage, drop list), and the text form the
// `quiclab link` command line and scripts/netlab.sh use to spell it.
//
// Sans-IO: nothing here touches the OS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "transport/core/clock.hpp"
#include "transport/core/result.hpp"

namespace quiclab::linkem {

/// How random loss is drawn for each arriving packet.
enum class LossModel {
  kNone,            ///< No random loss.
  kBernoulli,       ///< Each packet is lost independently with probability `loss`.
  kGilbertElliott,  ///< Two-state Markov chain (bursty loss), netem's "gemodel".
};

/// Gilbert-Elliott parameters, as probabilities in [0, 1], in netem's order
/// ("loss gemodel p r 1-h 1-k"). The chain moves once per packet, then the
/// packet is lost with the loss probability of the state it is now in.
struct GilbertElliott {
  double p = 0.0;          ///< P(good -> bad) per packet.
  double r = 1.0;          ///< P(bad -> good) per packet; mean burst length is 1/r.
  double loss_bad = 1.0;   ///< 1-h: loss probability in the bad state.
  double loss_good = 0.0;  ///< 1-k: loss probability in the good state.

  /// Long-run loss probability of this chain.
  double mean_loss() const;
};

/// Periodic link outage: the link is up until `first_down`, then down for
/// `down`, up for `up`, down for `down`, ... Packets arriving while the link
/// is down are dropped. Disabled when `down` is 0.
struct OutageSchedule {
  Timestamp down = 0;        ///< Length of each down phase (ns).
  Timestamp up = 0;          ///< Length of each up phase after the first (ns).
  Timestamp first_down = 0;  ///< Start of the first down phase, relative to the link's start (ns).

  bool enabled() const { return down > 0; }
  /// Whether the link is down at `since_start` ns after the link's start.
  bool is_down(Timestamp since_start) const;
};

/// Packets `first`..`last` (1-based, inclusive) of a flow.
struct DropRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
};

/// Which flows a drop list applies to. A flow is the 5-tuple of an IPv4/IPv6
/// TCP or UDP packet as seen in this direction (other packets: protocol and
/// addresses only). Zero fields match anything.
struct FlowFilter {
  std::uint8_t protocol = 0;  ///< 6 = TCP, 17 = UDP, 0 = any.
  std::uint16_t port = 0;     ///< Matches the source or the destination port; 0 = any.
};

/// One direction of an emulated link. Packets pass, in this order:
/// drop list / outage / random loss -> drop-tail queue (bounded in packets
/// and bytes) -> serialization at `rate_bps` on a virtual link clock ->
/// propagation `delay` +- uniform `jitter`, never reordered unless `reorder`.
struct LinkConfig {
  Timestamp delay = 0;   ///< One-way propagation delay (ns).
  Timestamp jitter = 0;  ///< Uniform jitter: each packet gets delay + U[-jitter, +jitter] (ns).
  /// Allow jitter to reorder packets. When false (default) a packet is never
  /// delivered before the one that arrived ahead of it.
  bool reorder = false;

  LossModel loss_model = LossModel::kNone;
  double loss = 0.0;         ///< Bernoulli loss probability in [0, 1].
  GilbertElliott gilbert{};  ///< Used when loss_model is kGilbertElliott.

  std::uint64_t rate_bps = 0;        ///< Link rate in bit/s of IP packet bytes; 0 = unlimited.
  std::size_t queue_packets = 1000;  ///< Queue bound in packets waiting for the link (>= 1).
  std::size_t queue_bytes = 0;       ///< Queue bound in bytes waiting for the link; 0 = none.

  OutageSchedule outage{};
  std::vector<DropRange> drop_list;  ///< Per-flow packet ranges to drop.
  FlowFilter drop_flow{};            ///< Flows the drop list applies to.

  std::uint64_t seed = 1;  ///< Seeds this direction's random number generators.
  /// Common random numbers (`draws=flow`): the loss and jitter draws of a
  /// packet are a function of (seed, epoch, the flow's ordinal in its epoch,
  /// the packet's index in its flow), not of its arrival index on the link,
  /// so the k-th packet of run r's connection meets the same draw whichever
  /// protocol carries it and whatever else crosses the link
  /// (LinkDirection::set_epoch). false (`draws=arrival`): one sequence per direction.
  bool per_flow_draws = false;

  /// Checks ranges (probabilities in [0, 1], queue_packets >= 1, drop ranges
  /// ordered, outage up > 0 when down > 0). Error text names the bad field.
  Status validate() const;
  /// The spec string that parses back to this config (for logs and event logs).
  std::string to_spec() const;
};

/// Parses a link spec: whitespace- or comma-separated `key=value` items,
/// applied on top of `base`. Keys (units are required where shown):
///   delay=20ms  jitter=1ms  reorder=0|1
///   loss=1%  (Bernoulli)     loss-model=none|bernoulli|gilbert
///   ge-p=1% ge-r=30% ge-bad=100% ge-good=0%   (Gilbert-Elliott, sets loss-model=gilbert)
///   rate=10mbit (bit, kbit, mbit, gbit; 0 = unlimited)
///   queue-pkts=100  queue-bytes=150000
///   outage=DOWN/UP[@FIRST]  e.g. outage=200ms/800ms@1s
///   drop=3-5+9-9  (packet ranges of each flow, '+' separated)
///   drop-flow=udp:4433 | tcp:443 | udp | any
///   seed=42  draws=arrival|flow  (common random numbers per flow: see per_flow_draws)
/// Durations take ns, us, ms or s. Probabilities take a '%' suffix or a plain
/// fraction. Returns an error naming the item that did not parse; the result
/// is validated.
Result<LinkConfig> parse_link_spec(std::string_view spec, LinkConfig base = {});

/// Parses "20ms", "1.5ms", "250us", "2s", "100ns" into ns.
Result<Timestamp> parse_duration(std::string_view text);
/// Parses "10mbit", "1.5gbit", "64kbit", "1000bit" into bit/s.
Result<std::uint64_t> parse_rate(std::string_view text);
/// Parses "1%", "0.5%" or "0.01" into a probability in [0, 1].
Result<double> parse_probability(std::string_view text);

/// Derives independent, reproducible seeds for the directions of one link
/// (index 0, 1, ...) from the seed the user gave (splitmix64).
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index);

}  // namespace quiclab::linkem
