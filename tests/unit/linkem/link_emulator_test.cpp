// The link emulator's scheduler on simulated time: every timestamp here is a
// plain nanosecond count, no clock or socket is involved.
#include "bench/linkem/link_emulator.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <vector>

using namespace quiclab;
using namespace quiclab::linkem;

namespace {

constexpr Timestamp ms(double v) { return static_cast<Timestamp>(v * 1e6); }
constexpr Timestamp us(double v) { return static_cast<Timestamp>(v * 1e3); }

// An IPv4/UDP packet of `size` bytes (header fields that matter for flows only).
Bytes udp_packet(std::size_t size, std::uint16_t sport = 5000, std::uint16_t dport = 4433, std::uint8_t src_last = 2) {
  Bytes p(std::max<std::size_t>(size, 28), 0);
  p[0] = 0x45;
  p[2] = static_cast<std::uint8_t>(p.size() >> 8);
  p[3] = static_cast<std::uint8_t>(p.size());
  p[8] = 64;
  p[9] = 17;
  const std::uint8_t src[4] = {192, 0, 2, src_last};
  const std::uint8_t dst[4] = {198, 51, 100, 2};
  std::copy(src, src + 4, p.begin() + 12);
  std::copy(dst, dst + 4, p.begin() + 16);
  p[20] = static_cast<std::uint8_t>(sport >> 8);
  p[21] = static_cast<std::uint8_t>(sport);
  p[22] = static_cast<std::uint8_t>(dport >> 8);
  p[23] = static_cast<std::uint8_t>(dport);
  return p;
}

LinkConfig spec(std::string_view s) {
  auto c = parse_link_spec(s);
  INFO(s);
  REQUIRE(c.ok());
  return *c;
}

// Offers `n` packets of `size` bytes at times t0, t0+gap, ... and drains
// everything, returning the deliveries in the order they left.
std::vector<Delivery> run(LinkDirection& d, std::size_t n, std::size_t size, Timestamp t0, Timestamp gap,
                          std::vector<Fate>* fates = nullptr) {
  std::vector<Delivery> out;
  Timestamp t = t0;
  for (std::size_t i = 0; i < n; ++i, t += gap) {
    d.take_due(t, out);
    auto f = d.offer(t, udp_packet(size));
    if (fates) fates->push_back(f);
  }
  while (auto next = d.next_delivery()) d.take_due(*next, out);
  return out;
}

}  // namespace

TEST_CASE("a packet is delivered exactly after the propagation delay", "[linkem]") {
  LinkDirection d(spec("delay=20ms"), 0);
  std::vector<Delivery> out;
  REQUIRE(d.offer(ms(5), udp_packet(100)) == Fate::kScheduled);
  REQUIRE(d.next_delivery() == ms(25));
  CHECK(d.take_due(ms(25) - 1, out) == 0);
  CHECK(d.take_due(ms(25), out) == 1);
  CHECK(out[0].packet.size() == 100);
  CHECK(out[0].deliver_at == ms(25));
  CHECK(d.counters().lateness.quantile(0.5) <= 1000);
  CHECK_FALSE(d.next_delivery().has_value());
}

TEST_CASE("serialization spaces packets at the configured rate", "[linkem]") {
  // 1250 bytes at 10 Mbit/s take exactly 1 ms each.
  LinkDirection d(spec("rate=10mbit delay=5ms queue-pkts=100"), 0);
  auto out = run(d, 10, 1250, 0, 0);
  REQUIRE(out.size() == 10);
  for (std::size_t i = 0; i < out.size(); ++i) {
    CHECK(out[i].deliver_at == ms(5) + ms(1) * (i + 1));
  }
}

TEST_CASE("the virtual link clock keeps the long-run rate exact (no drift)", "[linkem]") {
  // 1500 bytes at 7 Mbit/s is 1.714285... ms: rounding must not accumulate.
  LinkDirection d(spec("rate=7mbit queue-pkts=100000"), 0);
  const std::size_t n = 70'000;
  auto out = run(d, n, 1500, 0, 0);
  REQUIRE(out.size() == n);
  const double exact_ns = static_cast<double>(n) * 1500 * 8 / 7e6 * 1e9;
  CHECK(std::fabs(static_cast<double>(out.back().deliver_at) - exact_ns) <= 1.0);
}

TEST_CASE("an idle link earns no burst credit", "[linkem]") {
  LinkDirection d(spec("rate=10mbit queue-pkts=100"), 0);
  std::vector<Delivery> out;
  d.offer(0, udp_packet(1250));
  d.take_due(ms(1), out);
  // One second idle, then a burst of 5: still one per millisecond.
  for (int i = 0; i < 5; ++i) d.offer(ms(1000), udp_packet(1250));
  while (auto next = d.next_delivery()) d.take_due(*next, out);
  REQUIRE(out.size() == 6);
  for (std::size_t i = 1; i < out.size(); ++i) CHECK(out[i].deliver_at == ms(1000) + ms(1) * i);
}

TEST_CASE("the rate holds under overload: delivered bits match rate x time", "[linkem]") {
  // Offer 2x the link rate for 2 s; the link delivers at its rate and drops the rest.
  LinkDirection d(spec("rate=20mbit queue-pkts=50"), 0);
  // 40 Mbit/s of 1000-byte packets = one every 200 us.
  std::vector<Fate> fates;
  auto out = run(d, 10'000, 1000, 0, us(200), &fates);
  const auto& c = d.counters();
  CHECK(c.dropped_queue > 4000);
  CHECK(c.max_queue_packets == 50);
  const double seconds = to_ms(out.back().deliver_at - out.front().deliver_at) / 1e3;
  const double mbit = static_cast<double>((out.size() - 1) * 1000 * 8) / seconds / 1e6;
  CHECK(mbit == Approx(20.0).epsilon(1e-6));
}

TEST_CASE("the drop-tail queue is bounded in packets", "[linkem]") {
  LinkDirection d(spec("rate=1mbit queue-pkts=5"), 0);
  std::vector<Fate> fates;
  for (int i = 0; i < 20; ++i) fates.push_back(d.offer(0, udp_packet(1000)));
  // One is on the wire, five wait, the rest are dropped at the tail.
  for (int i = 0; i < 6; ++i) CHECK(fates[static_cast<std::size_t>(i)] == Fate::kScheduled);
  for (int i = 6; i < 20; ++i) CHECK(fates[static_cast<std::size_t>(i)] == Fate::kQueueFull);
  CHECK(d.queued_packets(0) == 5);
  CHECK(d.counters().dropped_queue == 14);
  // After one transmission time (8 ms) a slot frees up.
  CHECK(d.queued_packets(ms(8)) == 4);
  CHECK(d.offer(ms(8), udp_packet(1000)) == Fate::kScheduled);
  CHECK(d.offer(ms(8), udp_packet(1000)) == Fate::kQueueFull);
}

TEST_CASE("the drop-tail queue is bounded in bytes", "[linkem]") {
  LinkDirection d(spec("rate=1mbit queue-pkts=1000 queue-bytes=3000"), 0);
  std::vector<Fate> fates;
  for (int i = 0; i < 6; ++i) fates.push_back(d.offer(0, udp_packet(1000)));
  CHECK(fates == std::vector<Fate>{Fate::kScheduled, Fate::kScheduled, Fate::kScheduled, Fate::kScheduled,
                                   Fate::kQueueFull, Fate::kQueueFull});
  CHECK(d.queued_bytes(0) == 3000);
  // A small packet still fits in no room: 3000 + 100 > 3000.
  CHECK(d.offer(0, udp_packet(100)) == Fate::kQueueFull);
  CHECK(d.counters().max_queue_bytes == 3000);
}

TEST_CASE("without a rate nothing queues, so the queue bound never drops", "[linkem]") {
  LinkDirection d(spec("delay=10ms queue-pkts=1"), 0);
  std::vector<Fate> fates;
  auto out = run(d, 100, 1500, 0, 0, &fates);
  CHECK(out.size() == 100);
  CHECK(d.counters().dropped_queue == 0);
}

TEST_CASE("Bernoulli loss matches the configured rate", "[linkem]") {
  LinkDirection d(spec("loss=2% seed=7"), 0);
  const std::size_t n = 200'000;
  auto out = run(d, n, 100, 0, us(10));
  const double p = 0.02;
  const double sigma = std::sqrt(n * p * (1 - p));
  const double lost = static_cast<double>(d.counters().dropped_loss);
  CHECK(std::fabs(lost - n * p) < 4 * sigma);
  CHECK(out.size() + d.counters().dropped_loss == n);
}

TEST_CASE("Gilbert-Elliott loss has the chain's mean rate and burst length", "[linkem]") {
  // p=1%, r=25%: mean loss 1/26, mean burst 4 packets.
  auto cfg = spec("ge-p=1% ge-r=25% ge-bad=100% ge-good=0% seed=11");
  LinkDirection d(cfg, 0);
  const std::size_t n = 400'000;
  std::vector<Fate> fates;
  run(d, n, 100, 0, us(1), &fates);
  std::size_t lost = 0, bursts = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (fates[i] == Fate::kLoss) {
      ++lost;
      if (i == 0 || fates[i - 1] != Fate::kLoss) ++bursts;
    }
  }
  const double rate = static_cast<double>(lost) / n;
  CHECK(rate == Approx(cfg.gilbert.mean_loss()).epsilon(0.08));
  CHECK(static_cast<double>(lost) / static_cast<double>(bursts) == Approx(4.0).epsilon(0.08));
}

TEST_CASE("jitter never reorders unless asked to", "[linkem]") {
  SECTION("default: delivery order is arrival order") {
    LinkDirection d(spec("delay=10ms jitter=5ms seed=3"), 0);
    auto out = run(d, 5000, 200, 0, us(100));
    REQUIRE(out.size() == 5000);
    for (std::size_t i = 1; i < out.size(); ++i) {
      REQUIRE(out[i].seq > out[i - 1].seq);
      REQUIRE(out[i].deliver_at >= out[i - 1].deliver_at);
    }
  }
  SECTION("reorder=1: some packets overtake, all still arrive in time order") {
    LinkDirection d(spec("delay=10ms jitter=5ms reorder=1 seed=3"), 0);
    auto out = run(d, 5000, 200, 0, us(100));
    REQUIRE(out.size() == 5000);
    std::size_t overtakes = 0;
    for (std::size_t i = 1; i < out.size(); ++i) {
      REQUIRE(out[i].deliver_at >= out[i - 1].deliver_at);
      if (out[i].seq < out[i - 1].seq) ++overtakes;
    }
    CHECK(overtakes > 100);
  }
}

TEST_CASE("sparse packets see delay +- jitter, spread over the whole range", "[linkem]") {
  LinkDirection d(spec("delay=20ms jitter=2ms seed=5"), 0);
  // 100 ms apart: far more than 2 x jitter, so the no-reorder rule never bites.
  std::vector<Delivery> out;
  Timestamp lo = ~Timestamp{0}, hi = 0;
  double sum = 0;
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    Timestamp t = ms(100) * static_cast<Timestamp>(i);
    d.offer(t, udp_packet(100));
    out.clear();
    d.take_due(t + ms(30), out);
    REQUIRE(out.size() == 1);
    Timestamp delay = out[0].deliver_at - t;
    lo = std::min(lo, delay);
    hi = std::max(hi, delay);
    sum += static_cast<double>(delay);
  }
  CHECK(lo >= ms(18));
  CHECK(hi <= ms(22));
  CHECK(lo < ms(18.1));
  CHECK(hi > ms(21.9));
  CHECK(sum / n == Approx(static_cast<double>(ms(20))).epsilon(0.005));
}

TEST_CASE("the same seed gives the same drop pattern, whatever the timing", "[linkem]") {
  auto pattern = [](std::string_view s, Timestamp gap) {
    LinkDirection d(spec(s), 0);
    std::vector<Fate> fates;
    run(d, 20'000, 500, 0, gap, &fates);
    return fates;
  };
  auto a = pattern("loss=5% seed=42", us(100));
  // Different timing, delay and jitter: the loss draws are unchanged.
  auto b = pattern("loss=5% seed=42 delay=30ms jitter=3ms", us(7));
  auto c = pattern("loss=5% seed=43", us(100));
  CHECK(a == b);
  CHECK(a != c);
  auto g1 = pattern("ge-p=2% ge-r=30% seed=9", us(50));
  auto g2 = pattern("ge-p=2% ge-r=30% seed=9 jitter=1ms delay=1ms", us(3));
  CHECK(g1 == g2);
}

TEST_CASE("the same seed gives the same jitter, whatever the loss", "[linkem]") {
  auto delays = [](std::string_view s) {
    LinkDirection d(spec(s), 0);
    std::vector<Timestamp> v;
    std::vector<Delivery> out;
    for (int i = 0; i < 500; ++i) {
      Timestamp t = ms(50) * static_cast<Timestamp>(i);
      if (d.offer(t, udp_packet(100)) == Fate::kScheduled) {
        out.clear();
        d.take_due(t + ms(40), out);
        v.push_back(out.at(0).deliver_at - t);
      } else {
        v.push_back(0);
      }
    }
    return v;
  };
  auto a = delays("delay=20ms jitter=5ms seed=8");
  auto b = delays("delay=20ms jitter=5ms seed=8 loss=10%");
  REQUIRE(a.size() == b.size());
  std::size_t same = 0, lost = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (b[i] == 0) {
      ++lost;
    } else if (a[i] == b[i]) {
      ++same;
    }
  }
  CHECK(lost > 10);
  CHECK(same + lost == a.size());
}

TEST_CASE("outage mode drops arrivals while the link is down, repeatedly", "[linkem]") {
  // Up for 400 ms, down 100 ms, up 400 ms, ...
  LinkDirection d(spec("outage=100ms/400ms"), ms(1000));
  auto at = [&](double t_ms) { return d.offer(ms(1000 + t_ms), udp_packet(100)); };
  CHECK(at(0) == Fate::kScheduled);
  CHECK(at(399.9) == Fate::kScheduled);
  CHECK(at(400) == Fate::kOutage);
  CHECK(at(499.9) == Fate::kOutage);
  CHECK(at(500) == Fate::kScheduled);
  CHECK(at(899) == Fate::kScheduled);
  CHECK(at(900) == Fate::kOutage);
  CHECK(at(1000) == Fate::kScheduled);
  CHECK(d.counters().dropped_outage == 3);
}

TEST_CASE("drop-list mode drops packets k..m of each matching flow", "[linkem]") {
  LinkDirection d(spec("drop=3-5+8-8 drop-flow=udp:4433"), 0);
  std::vector<Fate> flow_a, flow_b, other;
  for (int i = 0; i < 10; ++i) {
    flow_a.push_back(d.offer(0, udp_packet(100, 5000, 4433)));
    flow_b.push_back(d.offer(0, udp_packet(100, 5001, 4433)));
    other.push_back(d.offer(0, udp_packet(100, 5000, 53)));
  }
  const std::vector<bool> dropped = {false, false, true, true, true, false, false, true, false, false};
  for (std::size_t i = 0; i < 10; ++i) {
    CHECK((flow_a[i] == Fate::kDropList) == dropped[i]);
    CHECK((flow_b[i] == Fate::kDropList) == dropped[i]);
    CHECK(other[i] == Fate::kScheduled);
  }
  CHECK(d.counters().dropped_droplist == 8);
}

TEST_CASE("the event log sees every arrival with its fate and every delivery", "[linkem]") {
  LinkDirection d(spec("delay=1ms loss=50% seed=1"), 0);
  std::vector<LinkEvent> events;
  d.set_observer([&](const LinkEvent& e) { events.push_back(e); });
  auto out = run(d, 100, 300, 0, us(10));
  std::size_t arrivals = 0, deliveries = 0, lost = 0;
  for (const auto& e : events) {
    if (e.kind == LinkEvent::Kind::kArrival) {
      ++arrivals;
      if (e.fate == Fate::kLoss) ++lost;
      if (e.fate == Fate::kScheduled) CHECK(e.deliver_at == e.time + ms(1));
    } else {
      ++deliveries;
      CHECK(e.size == 300);
    }
  }
  CHECK(arrivals == 100);
  CHECK(deliveries == out.size());
  CHECK(lost == d.counters().dropped_loss);
  CHECK(lost + deliveries == 100);
}

TEST_CASE("take_due records how late deliveries are taken", "[linkem]") {
  LinkDirection d(spec("delay=1ms"), 0);
  std::vector<Delivery> out;
  for (int i = 0; i < 100; ++i) {
    Timestamp t = ms(10) * static_cast<Timestamp>(i);
    d.offer(t, udp_packet(100));
    // 99 deliveries 20 us late, one 3 ms late.
    d.take_due(t + ms(1) + (i == 50 ? ms(3) : us(20)), out);
  }
  const auto& h = d.counters().lateness;
  CHECK(h.count() == 100);
  CHECK(h.quantile(0.5) == us(21));
  CHECK(h.quantile(0.99) == us(21));
  CHECK(h.quantile(1.0) == ms(3));
  CHECK(h.max() == ms(3));
}

namespace {
// A TCP packet: the UDP builder with protocol 6 (only the 5-tuple matters here).
Bytes tcp_packet(std::size_t size, std::uint16_t sport, std::uint16_t dport = 4433) {
  Bytes p = udp_packet(size, sport, dport);
  p[9] = 6;
  return p;
}
// Which of the first n packets of one flow a link drops, the flow's packets
// interleaved with `noise` packets of other flows between each of its own.
std::vector<bool> losses(LinkDirection& d, const std::function<Bytes(int)>& packet, int n, int noise, Timestamp& t) {
  std::vector<bool> out;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < noise; ++j) d.offer(t, udp_packet(200, static_cast<std::uint16_t>(20000 + (i * 7 + j) % 50)));
    out.push_back(d.offer(t, packet(i)) == Fate::kLoss);
    t += us(10);
  }
  return out;
}
}  // namespace

TEST_CASE("linkem draws=flow: run r's k-th packet meets the same loss whichever protocol carries it", "[linkem]") {
  auto cfg = spec("loss=10% jitter=2ms seed=7 draws=flow");
  CHECK(cfg.to_spec().find("draws=flow") != std::string::npos);
  CHECK(spec(cfg.to_spec()).per_flow_draws);

  // Run 3 over TCP and run 3 over UDP, each the first new flow of its epoch,
  // on separate links of the same seed: the same packets are lost, though the
  // UDP run shares its link with other flows.
  LinkDirection a(cfg, 0), b(cfg, 0);
  Timestamp ta = 0, tb = 0;
  a.set_epoch(3);
  b.set_epoch(3);
  auto tcp = losses(
      a, [](int) { return tcp_packet(1400, 40001); }, 500, 0, ta);
  auto udp = losses(
      b, [](int) { return udp_packet(1400, 51515); }, 500, 0, tb);
  CHECK(tcp == udp);
  const auto lost = std::count(tcp.begin(), tcp.end(), true);
  CHECK(lost > 25);  // ~50 at 10 %
  CHECK(lost < 80);

  // On one link in sequence: epoch 4's first flow draws differently from
  // epoch 3's, and the same as epoch 4's first flow on a fresh link.
  LinkDirection c(cfg, 0);
  Timestamp tc = 0;
  c.set_epoch(3);
  auto c3 = losses(
      c, [](int) { return tcp_packet(1400, 40001); }, 500, 0, tc);
  CHECK(c3 == tcp);
  c.set_epoch(4);
  auto c4 = losses(
      c, [](int) { return udp_packet(1400, 40002); }, 500, 0, tc);
  CHECK(c4 != c3);
  LinkDirection g(cfg, 0);
  Timestamp tg = 0;
  g.set_epoch(4);
  auto g4 = losses(
      g, [](int) { return tcp_packet(1400, 40009); }, 500, 0, tg);
  CHECK(g4 == c4);
  // A flow seen in an earlier epoch keeps drawing as it did: epoch 3's flow
  // continued under epoch 4 goes on with its own sequence.
  LinkDirection h(cfg, 0);
  Timestamp th = 0;
  h.set_epoch(3);
  auto h_first = losses(
      h, [](int) { return tcp_packet(1400, 40001); }, 250, 0, th);
  h.set_epoch(4);
  auto h_rest = losses(
      h, [](int) { return tcp_packet(1400, 40001); }, 250, 0, th);
  h_first.insert(h_first.end(), h_rest.begin(), h_rest.end());
  CHECK(h_first == tcp);

  // Other flows interleaved: the run's flow, first in its epoch, draws the same.
  LinkDirection n(cfg, 0);
  Timestamp tn = 0;
  n.set_epoch(3);
  auto first = losses(
      n, [](int) { return tcp_packet(1400, 40001); }, 1, 0, tn);
  auto rest = losses(
      n, [](int) { return tcp_packet(1400, 40001); }, 499, 3, tn);
  first.insert(first.end(), rest.begin(), rest.end());
  CHECK(first == tcp);

  // draws=arrival (the default) shifts with the traffic: interleaving changes the pattern.
  auto arr = spec("loss=10% seed=7");
  LinkDirection p(arr, 0), q(arr, 0);
  Timestamp tp = 0, tq = 0;
  auto quiet = losses(
      p, [](int) { return tcp_packet(1400, 40001); }, 500, 0, tp);
  auto noisy = losses(
      q, [](int) { return tcp_packet(1400, 40001); }, 500, 2, tq);
  CHECK(quiet != noisy);
}

TEST_CASE("linkem draws=flow: Gilbert-Elliott per flow keeps its mean loss, the flow table is bounded", "[linkem]") {
  auto cfg = spec("ge-p=2% ge-r=30% ge-bad=100% ge-good=0% seed=11 draws=flow");
  LinkDirection d(cfg, 0);
  Timestamp t = 0;
  auto l = losses(
      d, [](int) { return udp_packet(1200, 7000); }, 20000, 0, t);
  const double rate = static_cast<double>(std::count(l.begin(), l.end(), true)) / 20000;
  CHECK(rate == Approx(cfg.gilbert.mean_loss()).margin(0.015));  // 6.25 %
  // 100 000 distinct flows: the table starts over past 65 536 entries, nothing grows without bound.
  for (int i = 0; i < 100000; ++i)
    d.offer(t, udp_packet(100, static_cast<std::uint16_t>(i % 60000), 9, static_cast<std::uint8_t>(i / 60000 + 2)));
  CHECK(d.counters().packets_in == 120000);
  CHECK_FALSE(parse_link_spec("draws=sometimes").ok());
}
