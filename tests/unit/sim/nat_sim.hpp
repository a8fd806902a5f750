// A NAT and a small internet for tests, in memory on simulated time: what the
// hole-punching agent's tests (issue 11) and the RFC 5780 discovery tests
// stand on.
//
// sim::Nat models the behaviours of RFC 4787 one by one:
//   - mapping: endpoint-independent (one public port per inside endpoint),
//     address-dependent (one per inside endpoint and remote IP) or
//     address-and-port-dependent (one per remote IP and port: "symmetric");
//   - filtering: which remotes may send in through a mapping: any,
//     those whose IP the inside endpoint sent to, or exactly those IP:ports;
//   - mapping timeout: a mapping dies udp_timeout after its last outbound
//     packet (inbound packets refresh it only with inbound_refresh, RFC 4787
//     REQ-6 leaves that open; Linux conntrack refreshes both ways);
//   - port preservation: a new mapping keeps the inside port when no other
//     mapping holds it (Linux masquerade does), else takes the next free port;
//   - random ports (random_ports, seeded): a new mapping takes a port drawn
//     uniformly from 1024-65535, as masquerade's fully-random does (what
//     birthday-paradox punching has to find);
//   - hairpinning: an inside host sending to the NAT's public address reaches
//     the inside host behind that mapping only with hairpin on.
// The four usual names, as the lab's recipes give them:
//   full cone            EIM + endpoint-independent filtering
//   address-restricted   EIM + address-dependent filtering
//   port-restricted      EIM + address-and-port-dependent filtering (masquerade)
//   symmetric            APDM + address-and-port-dependent filtering (masquerade random)
//
// sim::Network routes datagrams between hosts on private prefixes (behind a
// NAT each) and public hosts, with a fixed one-way delay and seeded loss, in
// the order they were sent. A NAT translates outbound datagrams when they are
// sent and filters inbound ones when they arrive, so two first packets that
// cross on the wire meet each NAT's state of that moment (a packet arriving
// after the inside host has sent outward gets in). Every delivery and every drop goes into an event
// log, so a test can assert the same sequence for the same seed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/clock.hpp"

namespace quiclab::sim {

enum class Dependence { endpoint_independent, address_dependent, address_and_port_dependent };

inline const char* to_string(Dependence d) {
  switch (d) {
    case Dependence::endpoint_independent:
      return "endpoint-independent";
    case Dependence::address_dependent:
      return "address-dependent";
    case Dependence::address_and_port_dependent:
      return "address-and-port-dependent";
  }
  return "?";
}

struct NatConfig {
  Dependence mapping = Dependence::endpoint_independent;
  Dependence filtering = Dependence::endpoint_independent;
  std::string public_ip = "203.0.113.5";
  bool port_preservation = true;
  bool hairpin = false;
  Timestamp udp_timeout = 30 * kNanosPerSecond;  ///< Linux conntrack's default for unreplied UDP
  bool inbound_refresh = false;
  std::uint16_t port_base = 40000;  ///< where ports come from when the inside port is not kept
  bool random_ports = false;        ///< new mappings take random ports (1024-65535), seeded by port_seed
  std::uint64_t port_seed = 1;

  static NatConfig full_cone() { return {}; }
  static NatConfig address_restricted() {
    NatConfig c;
    c.filtering = Dependence::address_dependent;
    return c;
  }
  static NatConfig port_restricted() {
    NatConfig c;
    c.filtering = Dependence::address_and_port_dependent;
    return c;
  }
  static NatConfig symmetric() {
    NatConfig c;
    c.mapping = Dependence::address_and_port_dependent;
    c.filtering = Dependence::address_and_port_dependent;
    return c;
  }
};

struct NatStats {
  std::uint64_t mappings_created = 0;
  std::uint64_t mappings_expired = 0;
  std::uint64_t inbound_no_mapping = 0;  ///< nothing holds the public port (never mapped, or expired)
  std::uint64_t inbound_filtered = 0;    ///< a mapping exists, its filter refused the sender
  std::uint64_t inbound_passed = 0;
};

class Nat {
 public:
  explicit Nat(NatConfig config) : config_(std::move(config)), ports_rng_(config_.port_seed) {}

  const NatConfig& config() const { return config_; }
  const NatStats& stats() const { return stats_; }
  bool is_public(const SocketAddress& a) const { return a.ip() == config_.public_ip; }
  std::size_t live_mappings(Timestamp now) {
    expire(now);
    return by_port_.size();
  }

  /// A datagram from `inside` to `to` leaves the NAT: its public source
  /// address. Creates the mapping or refreshes it; lets `to` in through it.
  SocketAddress outbound(const SocketAddress& inside, const SocketAddress& to, Timestamp now) {
    expire(now);
    const std::string k = inside.to_string() + "|" + key(to, config_.mapping);
    auto it = by_key_.find(k);
    std::uint16_t port = 0;
    if (it == by_key_.end()) {
      port = allocate(inside.port());
      by_key_[k] = port;
      by_port_[port] = Mapping{inside, k, now + config_.udp_timeout, {}};
      ++stats_.mappings_created;
    } else {
      port = it->second;
    }
    auto& m = by_port_.at(port);
    m.expires = now + config_.udp_timeout;
    m.permitted.insert(key(to, config_.filtering));
    return SocketAddress::from_ip(config_.public_ip, port).value();
  }

  /// A datagram from `from` arrives at our public address `to`: the inside
  /// address it goes to, or nullopt (no mapping, or filtered).
  std::optional<SocketAddress> inbound(const SocketAddress& from, const SocketAddress& to, Timestamp now) {
    expire(now);
    auto it = by_port_.find(to.port());
    if (it == by_port_.end()) {
      ++stats_.inbound_no_mapping;
      return std::nullopt;
    }
    auto& m = it->second;
    if (config_.filtering != Dependence::endpoint_independent && m.permitted.count(key(from, config_.filtering)) == 0) {
      ++stats_.inbound_filtered;
      return std::nullopt;
    }
    if (config_.inbound_refresh) m.expires = now + config_.udp_timeout;
    ++stats_.inbound_passed;
    return m.inside;
  }

 private:
  struct Mapping {
    SocketAddress inside;
    std::string key;
    Timestamp expires = 0;
    std::set<std::string> permitted;  // filtering keys of remotes sent to
  };

  static std::string key(const SocketAddress& a, Dependence d) {
    switch (d) {
      case Dependence::endpoint_independent:
        return "*";
      case Dependence::address_dependent:
        return a.ip();
      case Dependence::address_and_port_dependent:
        return a.to_string();
    }
    return "*";
  }

  std::uint16_t allocate(std::uint16_t wanted) {
    if (config_.random_ports) {
      std::uniform_int_distribution<int> pick(1024, 65535);
      for (int i = 0; i < 1 << 20; ++i) {
        const auto p = static_cast<std::uint16_t>(pick(ports_rng_));
        if (by_port_.count(p) == 0) return p;
      }
      return 0;
    }
    if (config_.port_preservation && wanted != 0 && by_port_.count(wanted) == 0) return wanted;
    for (std::uint32_t i = 0; i < 65536; ++i) {
      auto p = static_cast<std::uint16_t>(config_.port_base + ((next_ + i) % (65536u - config_.port_base)));
      if (p != 0 && by_port_.count(p) == 0) {
        next_ = static_cast<std::uint16_t>((next_ + i + 1) % (65536u - config_.port_base));
        return p;
      }
    }
    return 0;  // exhausted: not reached by any test
  }

  void expire(Timestamp now) {
    for (auto it = by_port_.begin(); it != by_port_.end();) {
      if (it->second.expires <= now) {
        by_key_.erase(it->second.key);
        it = by_port_.erase(it);
        ++stats_.mappings_expired;
      } else {
        ++it;
      }
    }
  }

  NatConfig config_;
  NatStats stats_;
  std::map<std::string, std::uint16_t> by_key_;  // inside|mapping key -> public port
  std::map<std::uint16_t, Mapping> by_port_;
  std::uint16_t next_ = 0;
  std::mt19937_64 ports_rng_;
};

/// Hosts on private prefixes behind NATs, public hosts elsewhere.
class Network {
 public:
  struct Delivery {
    Timestamp at = 0;
    SocketAddress from;  ///< as the receiver sees it (translated)
    SocketAddress to;    ///< the receiver's own address
    Bytes data;
  };

  explicit Network(std::uint64_t seed = 1, Timestamp one_way = 10 * kNanosPerMilli) : rng_(seed), one_way_(one_way) {}

  /// Hosts whose IP starts with `inside_prefix` (e.g. "10.0.1.") are behind
  /// this NAT. The reference stays valid for the network's lifetime.
  Nat& add_nat(std::string inside_prefix, NatConfig config) {
    nats_.push_back({std::move(inside_prefix), std::make_unique<Nat>(std::move(config))});
    return *nats_.back().nat;
  }
  /// Each datagram crossing the internet is lost with this probability (seeded).
  void set_loss(double p) { loss_ = p; }
  /// A firewall on the internet: datagrams (public source after NAT, destination)
  /// for which it returns true are dropped.
  using Blocker = std::function<bool(const SocketAddress& from, const SocketAddress& to, Timestamp now)>;
  void set_blocker(Blocker b) { blocker_ = std::move(b); }

  /// Sends; the datagram is delivered one_way later, or dropped (logged).
  void send(const SocketAddress& from, const SocketAddress& to, ByteView data, Timestamp now) {
    auto* src_nat = nat_of(from);
    auto* dst_inside_nat = nat_of(to);
    SocketAddress src = from;
    if (src_nat != nullptr && dst_inside_nat == src_nat) {
      queue(now, from, to, data, "lan");  // same private network: no NAT on the way
      return;
    }
    if (dst_inside_nat != nullptr) return drop(now, from, to, "no route to a private address");
    if (src_nat != nullptr) src = src_nat->nat->outbound(from, to, now);
    if (loss_ > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < loss_) return drop(now, src, to, "lost");
    if (blocker_ && blocker_(src, to, now)) return drop(now, src, to, "blocked");
    for (auto& n : nats_) {
      if (!n.nat->is_public(to)) continue;
      if (&n == src_nat && !n.nat->config().hairpin) return drop(now, src, to, "no hairpin");
      // The destination NAT decides when the datagram gets there (take_due):
      // packets that cross on the wire meet the state of that moment.
      queue(now, src, to, data, "to nat", n.nat.get());
      return;
    }
    queue(now, src, to, data, "internet");
  }

  std::optional<Timestamp> next_delivery() const {
    if (in_flight_.empty()) return std::nullopt;
    return in_flight_.begin()->first.first;
  }
  /// Everything due at `now`, in the order it was sent.
  std::vector<Delivery> take_due(Timestamp now) {
    std::vector<Delivery> out;
    while (!in_flight_.empty() && in_flight_.begin()->first.first <= now) {
      auto f = std::move(in_flight_.begin()->second);
      in_flight_.erase(in_flight_.begin());
      if (f.nat != nullptr) {
        auto inside = f.nat->inbound(f.d.from, f.d.to, f.d.at);
        if (!inside) {
          drop(f.d.at, f.d.from, f.d.to, "filtered or unmapped");
          continue;
        }
        f.d.to = *inside;
      }
      out.push_back(std::move(f.d));
    }
    return out;
  }
  /// One line per delivery scheduled and per drop, with times.
  const std::vector<std::string>& log() const { return log_; }
  std::uint64_t dropped() const { return dropped_; }

 private:
  struct Entry {
    std::string prefix;
    std::unique_ptr<Nat> nat;
  };

  Entry* nat_of(const SocketAddress& a) {
    const std::string ip = a.ip();
    for (auto& n : nats_)
      if (ip.rfind(n.prefix, 0) == 0) return &n;
    return nullptr;
  }
  struct InFlight {
    Delivery d;
    Nat* nat = nullptr;  // translate (and filter) on arrival
  };
  void queue(Timestamp now, const SocketAddress& from, const SocketAddress& to, ByteView data, const char* how,
             Nat* nat = nullptr) {
    Delivery d{now + one_way_, from, to, Bytes(data.begin(), data.end())};
    log_.push_back(std::to_string(now) + " " + from.to_string() + " -> " + to.to_string() + " " + how + " " +
                   std::to_string(data.size()));
    in_flight_.emplace(std::make_pair(d.at, seq_++), InFlight{std::move(d), nat});
  }
  void drop(Timestamp now, const SocketAddress& from, const SocketAddress& to, const char* why) {
    ++dropped_;
    log_.push_back(std::to_string(now) + " " + from.to_string() + " -> " + to.to_string() + " dropped: " + why);
  }

  std::mt19937_64 rng_;
  Timestamp one_way_;
  Blocker blocker_;
  double loss_ = 0;
  std::vector<Entry> nats_;
  std::map<std::pair<Timestamp, std::uint64_t>, InFlight> in_flight_;
  std::uint64_t seq_ = 0;
  std::vector<std::string> log_;
  std::uint64_t dropped_ = 0;
};

}  // namespace quiclab::sim
