// The link emulator's scheduler, sans-IO: packets and timestamps in, packets
// with their delivery times out. `quiclab link` feeds it from TUN devices and
// arms a timerfd for next_delivery(); unit tests feed it on simulated time.
//
// One LinkDirection is one direction of a link. Its pipeline, per packet, as
// the packet arrives:
//   1. random draws: the loss generator and the jitter generator each advance
//      by a fixed number of draws per packet, whatever happens to the packet,
//      so the same seed gives the same loss and jitter pattern whatever the
//      timing or the queue does;
//   2. fate at arrival: drop list, then outage, then random loss, then the
//      drop-tail queue (packets waiting for the link, bounded in packets and
//      bytes);
//   3. serialization on a virtual link clock: transmission starts when the
//      link is free (never earlier than the arrival: an idle link earns no
//      burst credit) and takes size * 8 / rate;
//   4. propagation: delivered at end of transmission + delay + U[-jitter,
//      +jitter], and never before an earlier packet unless reorder is on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <random>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bench/linkem/link_config.hpp"
#include "bench/linkem/packet_flow.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/clock.hpp"

namespace quiclab::linkem {

/// What happened to a packet when it arrived.
enum class Fate {
  kScheduled,  ///< Accepted; it will be delivered at its delivery time.
  kDropList,   ///< Dropped: its index in its flow is on the drop list.
  kOutage,     ///< Dropped: the link was down.
  kLoss,       ///< Dropped by the random loss model.
  kQueueFull,  ///< Dropped: the queue was full (packets or bytes).
};

/// Short lower-case name ("scheduled", "droplist", "outage", "loss", "queue").
std::string_view fate_name(Fate f);

/// One line of the event log: a packet's arrival (with its fate) or its delivery.
struct LinkEvent {
  enum class Kind { kArrival, kDelivery };
  Kind kind = Kind::kArrival;
  Timestamp time = 0;      ///< When it happened (arrival time, or the time delivery was made).
  std::uint64_t seq = 0;   ///< 1-based arrival index in this direction.
  std::uint32_t size = 0;  ///< Packet size in bytes.
  Fate fate = Fate::kScheduled;
  Timestamp deliver_at = 0;  ///< Scheduled delivery time (scheduled arrivals and deliveries).
};

/// Histogram of how late deliveries were made (actual - scheduled), for the
/// delay line's timer error. 1 us buckets up to 50 ms, then one overflow bucket.
class LatenessHistogram {
 public:
  void add(Timestamp late_ns);
  std::uint64_t count() const { return count_; }
  /// The q-quantile (0..1) in ns, at 1 us resolution (bucket upper bound); 0 when empty.
  Timestamp quantile(double q) const;
  Timestamp max() const { return max_; }

 private:
  static constexpr std::size_t kBuckets = 50'000;
  std::vector<std::uint64_t> buckets_ = std::vector<std::uint64_t>(kBuckets + 1, 0);
  std::uint64_t count_ = 0;
  Timestamp max_ = 0;
};

/// Counters for one direction.
struct LinkCounters {
  std::uint64_t packets_in = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t dropped_droplist = 0;
  std::uint64_t dropped_outage = 0;
  std::uint64_t dropped_loss = 0;
  std::uint64_t dropped_queue = 0;
  std::uint64_t delivered_packets = 0;
  std::uint64_t delivered_bytes = 0;
  std::size_t max_queue_packets = 0;  ///< Most packets ever waiting for the link.
  std::size_t max_queue_bytes = 0;
  LatenessHistogram lateness;  ///< Filled by take_due().
};

/// A packet leaving the link.
struct Delivery {
  Bytes packet;
  std::uint64_t seq = 0;
  Timestamp deliver_at = 0;  ///< When it was scheduled to leave.
};

class LinkDirection {
 public:
  /// `start` is the link's time origin (the outage schedule counts from it).
  /// The config must be valid (LinkConfig::validate); an invalid one is a
  /// programming error and throws std::invalid_argument.
  LinkDirection(LinkConfig config, Timestamp start);

  /// Offers a packet that arrived at `now` (non-decreasing across calls).
  /// Returns its fate; a kScheduled packet is kept until take_due().
  Fate offer(Timestamp now, Bytes packet);

  /// Earliest scheduled delivery time, if any packet is in flight.
  ///
  /// The deadline convention of transport/core/clock.hpp (optional, nullopt:
  /// nothing scheduled) under this scheduler's own names: what is due here
  /// is not work the link does but its output (the packets take_due() hands
  /// back), so a void handle_expiry() would only hide them, and "delivery"
  /// says what the time means. Adapters arm for it as for any expiry().
  std::optional<Timestamp> next_delivery() const;

  /// Appends to `out`, in delivery order, every packet whose delivery time is
  /// at or before `now`, and records how late each is. Returns how many.
  std::size_t take_due(Timestamp now, std::vector<Delivery>& out);

  /// Packets / bytes waiting for the link at `now` (not counting the one
  /// being serialized nor those propagating).
  std::size_t queued_packets(Timestamp now);
  std::size_t queued_bytes(Timestamp now);
  /// Packets accepted and not yet taken by take_due().
  std::size_t in_flight() const { return delay_line_.size(); }

  /// Starts an epoch (with draws=flow: one run of an experiment). Flows first
  /// seen from now on are numbered 0, 1, ... within `epoch`; a flow seen
  /// before keeps its identity, so a previous run's stragglers draw as before.
  void set_epoch(std::uint64_t epoch);
  std::uint64_t epoch() const { return epoch_; }

  const LinkCounters& counters() const { return counters_; }
  const LinkConfig& config() const { return config_; }

  /// Called for every arrival and delivery; must not call back into this object.
  void set_observer(std::function<void(const LinkEvent&)> observer) { observer_ = std::move(observer); }

 private:
  struct Waiting {
    Timestamp tx_start;
    std::uint32_t size;
  };
  struct InFlight {
    Timestamp deliver_at;
    std::uint64_t seq;
    Bytes packet;
  };

  struct FlowDraws {
    std::uint64_t epoch = 0, ordinal = 0, packets = 0;
    bool gilbert_bad = false;
  };
  /// The packet's draws (loss, jitter) under draws=flow.
  void draw_per_flow(ByteView packet, bool& lost, std::int64_t& jitter);
  double draw(std::mt19937_64& rng);
  bool draw_loss();
  std::int64_t draw_jitter();
  void expire_waiting(Timestamp now);
  bool on_drop_list(ByteView packet);
  void emit(const LinkEvent& e) {
    if (observer_) observer_(e);
  }

  LinkConfig config_;
  Timestamp start_;
  std::mt19937_64 loss_rng_;
  std::mt19937_64 jitter_rng_;
  bool gilbert_bad_ = false;

  std::uint64_t seq_ = 0;
  Timestamp link_free_at_ = 0;      ///< Virtual link clock: when the transmitter is next idle.
  std::uint64_t carry_bit_ns_ = 0;  ///< Remainder of bits * 1e9 / rate, so rounding never drifts.
  Timestamp last_deliver_at_ = 0;

  std::deque<Waiting> waiting_;  ///< Accepted packets whose transmission has not started.
  std::size_t waiting_bytes_ = 0;
  std::deque<InFlight> delay_line_;  ///< Sorted by (deliver_at, seq).

  std::unordered_map<FlowKey, std::uint64_t, FlowKeyHash> flow_packets_;
  std::uint64_t epoch_ = 0, next_ordinal_ = 0;
  std::unordered_map<FlowKey, FlowDraws, FlowKeyHash> flow_draws_;

  LinkCounters counters_;
  std::function<void(const LinkEvent&)> observer_;
};

}  // namespace quiclab::linkem
