#include "bench/linkem/link_emulator.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace quiclab::linkem {

std::string_view fate_name(Fate f) {
  switch (f) {
    case Fate::kScheduled:
      return "scheduled";
    case Fate::kDropList:
      return "droplist";
    case Fate::kOutage:
      return "outage";
    case Fate::kLoss:
      return "loss";
    case Fate::kQueueFull:
      return "queue";
  }
  return "unknown";
}

void LatenessHistogram::add(Timestamp late_ns) {
  std::size_t b = static_cast<std::size_t>(std::min<Timestamp>(late_ns / 1000, kBuckets));
  buckets_[b]++;
  count_++;
  max_ = std::max(max_, late_ns);
}

Timestamp LatenessHistogram::quantile(double q) const {
  if (count_ == 0) return 0;
  auto target = static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(count_)));
  target = std::max<std::uint64_t>(target, 1);
  std::uint64_t seen = 0;
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    seen += buckets_[b];
    if (seen >= target) return b == kBuckets ? max_ : std::min<Timestamp>((b + 1) * 1000, max_);
  }
  return max_;
}

LinkDirection::LinkDirection(LinkConfig config, Timestamp start)
    : config_(std::move(config)),
      start_(start),
      // Two generators from one seed: loss draws never shift because jitter
      // is switched on or off, and vice versa.
      loss_rng_(derive_seed(config_.seed, 100)),
      jitter_rng_(derive_seed(config_.seed, 200)),
      link_free_at_(start) {
  if (auto st = config_.validate(); !st) throw std::invalid_argument(st.error().message);
}

double LinkDirection::draw(std::mt19937_64& rng) {
  // 53 random bits -> [0, 1); the standard distributions are not specified
  // bit-exactly, so we do not use them: a seed must mean the same everywhere.
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

bool LinkDirection::draw_loss() {
  switch (config_.loss_model) {
    case LossModel::kNone:
      return false;
    case LossModel::kBernoulli:
      return draw(loss_rng_) < config_.loss;
    case LossModel::kGilbertElliott: {
      // netem's order: move the chain, then decide with the new state's loss.
      double move = draw(loss_rng_);
      double lose = draw(loss_rng_);
      if (gilbert_bad_) {
        if (move < config_.gilbert.r) gilbert_bad_ = false;
      } else {
        if (move < config_.gilbert.p) gilbert_bad_ = true;
      }
      return lose < (gilbert_bad_ ? config_.gilbert.loss_bad : config_.gilbert.loss_good);
    }
  }
  return false;
}

namespace {
// Bounds the per-flow table: past this many flows it starts over (new
// ordinals in the current epoch), so a flood of flows cannot grow memory.
constexpr std::size_t kMaxFlows = 65536;

// A counter-based draw in [0, 1): splitmix64 over (seed, epoch, ordinal,
// index, slot), the same value for the same tuple on every machine.
double keyed_draw(std::uint64_t seed, std::uint64_t epoch, std::uint64_t ordinal, std::uint64_t index,
                  std::uint64_t slot) {
  std::uint64_t h = derive_seed(derive_seed(derive_seed(derive_seed(seed, epoch), ordinal), index), slot);
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}
}  // namespace

void LinkDirection::set_epoch(std::uint64_t epoch) {
  epoch_ = epoch;
  next_ordinal_ = 0;
}

void LinkDirection::draw_per_flow(ByteView packet, bool& lost, std::int64_t& jitter) {
  const FlowKey key = parse_flow(packet).value_or(FlowKey{});  // not IP: one flow of its own
  auto it = flow_draws_.find(key);
  if (it == flow_draws_.end()) {
    if (flow_draws_.size() >= kMaxFlows) flow_draws_.clear();
    it = flow_draws_.emplace(key, FlowDraws{epoch_, next_ordinal_++, 0, false}).first;
  }
  FlowDraws& f = it->second;
  const std::uint64_t k = ++f.packets;
  auto u = [&](std::uint64_t slot) { return keyed_draw(config_.seed, f.epoch, f.ordinal, k, slot); };
  switch (config_.loss_model) {
    case LossModel::kNone:
      lost = false;
      break;
    case LossModel::kBernoulli:
      lost = u(1) < config_.loss;
      break;
    case LossModel::kGilbertElliott: {
      // The chain runs per flow, as the arrival-order chain runs per link.
      if (f.gilbert_bad) {
        if (u(0) < config_.gilbert.r) f.gilbert_bad = false;
      } else {
        if (u(0) < config_.gilbert.p) f.gilbert_bad = true;
      }
      lost = u(1) < (f.gilbert_bad ? config_.gilbert.loss_bad : config_.gilbert.loss_good);
      break;
    }
  }
  jitter = 0;
  if (config_.jitter != 0) {
    auto span = static_cast<double>(2 * config_.jitter + 1);
    jitter = static_cast<std::int64_t>(std::floor(u(2) * span)) - static_cast<std::int64_t>(config_.jitter);
  }
}

std::int64_t LinkDirection::draw_jitter() {
  if (config_.jitter == 0) return 0;
  auto span = static_cast<double>(2 * config_.jitter + 1);
  auto j = static_cast<std::int64_t>(std::floor(draw(jitter_rng_) * span));
  return j - static_cast<std::int64_t>(config_.jitter);
}

void LinkDirection::expire_waiting(Timestamp now) {
  while (!waiting_.empty() && waiting_.front().tx_start <= now) {
    waiting_bytes_ -= waiting_.front().size;
    waiting_.pop_front();
  }
}

bool LinkDirection::on_drop_list(ByteView packet) {
  auto flow = parse_flow(packet);
  if (!flow) return false;
  const auto& f = config_.drop_flow;
  if (f.protocol != 0 && f.protocol != flow->protocol) return false;
  if (f.port != 0 && f.port != flow->src_port && f.port != flow->dst_port) return false;
  std::uint64_t index = ++flow_packets_[*flow];
  return std::any_of(config_.drop_list.begin(), config_.drop_list.end(),
                     [index](const DropRange& r) { return index >= r.first && index <= r.last; });
}

Fate LinkDirection::offer(Timestamp now, Bytes packet) {
  const auto size = static_cast<std::uint32_t>(packet.size());
  const std::uint64_t seq = ++seq_;
  counters_.packets_in++;
  counters_.bytes_in += size;

  // Draw first, for every packet, so the random pattern depends only on the
  // seed and the arrival index.
  bool lost = false;
  std::int64_t jitter = 0;
  if (config_.per_flow_draws) {
    draw_per_flow(packet, lost, jitter);
  } else {
    lost = draw_loss();
    jitter = draw_jitter();
  }
  expire_waiting(now);

  const bool must_wait = link_free_at_ > now;
  Fate fate = Fate::kScheduled;
  if (!config_.drop_list.empty() && on_drop_list(packet)) {
    fate = Fate::kDropList;
  } else if (config_.outage.is_down(now >= start_ ? now - start_ : 0)) {
    fate = Fate::kOutage;
  } else if (lost) {
    fate = Fate::kLoss;
  } else if (must_wait && (waiting_.size() >= config_.queue_packets ||
                           (config_.queue_bytes != 0 && waiting_bytes_ + size > config_.queue_bytes))) {
    fate = Fate::kQueueFull;
  }

  LinkEvent ev{LinkEvent::Kind::kArrival, now, seq, size, fate, 0};
  switch (fate) {
    case Fate::kDropList:
      counters_.dropped_droplist++;
      emit(ev);
      return fate;
    case Fate::kOutage:
      counters_.dropped_outage++;
      emit(ev);
      return fate;
    case Fate::kLoss:
      counters_.dropped_loss++;
      emit(ev);
      return fate;
    case Fate::kQueueFull:
      counters_.dropped_queue++;
      emit(ev);
      return fate;
    case Fate::kScheduled:
      break;
  }

  // Serialization on the virtual link clock.
  const Timestamp tx_start = std::max(now, link_free_at_);
  Timestamp tx_end = tx_start;
  if (config_.rate_bps != 0) {
    const std::uint64_t bit_ns = static_cast<std::uint64_t>(size) * 8 * kNanosPerSecond + carry_bit_ns_;
    tx_end += bit_ns / config_.rate_bps;
    carry_bit_ns_ = bit_ns % config_.rate_bps;
  }
  link_free_at_ = tx_end;
  if (tx_start > now) {
    waiting_.push_back(Waiting{tx_start, size});
    waiting_bytes_ += size;
    counters_.max_queue_packets = std::max(counters_.max_queue_packets, waiting_.size());
    counters_.max_queue_bytes = std::max(counters_.max_queue_bytes, waiting_bytes_);
  }

  // Propagation with jitter; a packet never leaves before its last bit is sent.
  auto offset = static_cast<std::int64_t>(config_.delay) + jitter;
  Timestamp deliver_at = tx_end + static_cast<Timestamp>(std::max<std::int64_t>(offset, 0));
  if (!config_.reorder) deliver_at = std::max(deliver_at, last_deliver_at_);
  last_deliver_at_ = std::max(last_deliver_at_, deliver_at);

  ev.deliver_at = deliver_at;
  emit(ev);
  InFlight f{deliver_at, seq, std::move(packet)};
  if (delay_line_.empty() || delay_line_.back().deliver_at <= deliver_at) {
    delay_line_.push_back(std::move(f));
  } else {
    // Only with reorder on: keep the line sorted by delivery time, FIFO on ties.
    auto pos = std::upper_bound(delay_line_.begin(), delay_line_.end(), deliver_at,
                                [](Timestamp t, const InFlight& x) { return t < x.deliver_at; });
    delay_line_.insert(pos, std::move(f));
  }
  return fate;
}

std::optional<Timestamp> LinkDirection::next_delivery() const {
  if (delay_line_.empty()) return std::nullopt;
  return delay_line_.front().deliver_at;
}

std::size_t LinkDirection::take_due(Timestamp now, std::vector<Delivery>& out) {
  std::size_t n = 0;
  while (!delay_line_.empty() && delay_line_.front().deliver_at <= now) {
    InFlight f = std::move(delay_line_.front());
    delay_line_.pop_front();
    const auto size = static_cast<std::uint32_t>(f.packet.size());
    counters_.delivered_packets++;
    counters_.delivered_bytes += size;
    counters_.lateness.add(now - f.deliver_at);
    emit(LinkEvent{LinkEvent::Kind::kDelivery, now, f.seq, size, Fate::kScheduled, f.deliver_at});
    out.push_back(Delivery{std::move(f.packet), f.seq, f.deliver_at});
    ++n;
  }
  return n;
}

std::size_t LinkDirection::queued_packets(Timestamp now) {
  expire_waiting(now);
  return waiting_.size();
}

std::size_t LinkDirection::queued_bytes(Timestamp now) {
  expire_waiting(now);
  return waiting_bytes_;
}

}  // namespace quiclab::linkem
