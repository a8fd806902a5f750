#include "bench/linkem/link_config.hpp"

#include <catch2/catch.hpp>

#include "bench/linkem/packet_flow.hpp"

using namespace quiclab;
using namespace quiclab::linkem;

TEST_CASE("link specs parse units and fields", "[linkem][config]") {
  auto c = parse_link_spec("delay=20ms,jitter=250us rate=1.5mbit queue-pkts=64 queue-bytes=96000 loss=0.5% seed=9");
  REQUIRE(c.ok());
  CHECK(c->delay == 20'000'000);
  CHECK(c->jitter == 250'000);
  CHECK(c->rate_bps == 1'500'000);
  CHECK(c->queue_packets == 64);
  CHECK(c->queue_bytes == 96000);
  CHECK(c->loss_model == LossModel::kBernoulli);
  CHECK(c->loss == Approx(0.005));
  CHECK(c->seed == 9);
}

TEST_CASE("link specs: Gilbert-Elliott, outage and drop list", "[linkem][config]") {
  auto c = parse_link_spec("ge-p=1% ge-r=30% ge-bad=90% outage=200ms/1s@2s drop=3-5+9 drop-flow=tcp:443");
  REQUIRE(c.ok());
  CHECK(c->loss_model == LossModel::kGilbertElliott);
  CHECK(c->gilbert.p == Approx(0.01));
  CHECK(c->gilbert.r == Approx(0.30));
  CHECK(c->gilbert.loss_bad == Approx(0.90));
  CHECK(c->gilbert.loss_good == 0.0);
  CHECK(c->outage.down == 200 * kNanosPerMilli);
  CHECK(c->outage.up == kNanosPerSecond);
  CHECK(c->outage.first_down == 2 * kNanosPerSecond);
  REQUIRE(c->drop_list.size() == 2);
  CHECK(c->drop_list[1].first == 9);
  CHECK(c->drop_list[1].last == 9);
  CHECK(c->drop_flow.protocol == 6);
  CHECK(c->drop_flow.port == 443);
}

TEST_CASE("link specs round-trip through to_spec", "[linkem][config]") {
  auto c =
      parse_link_spec("delay=7ms jitter=3us ge-p=2% ge-r=40% rate=12mbit queue-pkts=9 outage=1ms/2ms drop=1-2 seed=5");
  REQUIRE(c.ok());
  auto again = parse_link_spec(c->to_spec());
  REQUIRE(again.ok());
  CHECK(again->to_spec() == c->to_spec());
  CHECK(again->delay == c->delay);
  CHECK(again->rate_bps == c->rate_bps);
  CHECK(again->gilbert.r == Approx(c->gilbert.r));
}

TEST_CASE("bad link specs are errors that name the item", "[linkem][config]") {
  const char* bad[] = {"delay=20",       "delay=-1ms", "loss=101%",      "loss=abc",    "rate=10",
                       "queue-pkts=0",   "bogus=1",    "delay",          "reorder=yes", "drop=5-3",
                       "drop-flow=sctp", "outage=1ms", "outage=1ms/0ms", "ge-r=2",      "rate=1xbit"};
  for (const char* s : bad) {
    INFO(s);
    auto c = parse_link_spec(s);
    CHECK_FALSE(c.ok());
    if (!c.ok()) CHECK_FALSE(c.error().message.empty());
  }
}

TEST_CASE("derived seeds differ per direction and are stable", "[linkem][config]") {
  CHECK(derive_seed(1, 0) != derive_seed(1, 1));
  CHECK(derive_seed(1, 0) != derive_seed(2, 0));
  CHECK(derive_seed(1, 0) == derive_seed(1, 0));
}

TEST_CASE("flows are read from IPv4 and IPv6 headers, junk is refused", "[linkem][config]") {
  Bytes v4(28, 0);
  v4[0] = 0x45;
  v4[9] = 17;
  v4[20] = 0x13;
  v4[21] = 0x88;  // 5000
  v4[22] = 0x11;
  v4[23] = 0x51;  // 4433
  auto f = parse_flow(v4);
  REQUIRE(f.has_value());
  CHECK(f->ip_version == 4);
  CHECK(f->src_port == 5000);
  CHECK(f->dst_port == 4433);

  Bytes v6(48, 0);
  v6[0] = 0x60;
  v6[6] = 6;
  v6[41] = 80;
  auto g = parse_flow(v6);
  REQUIRE(g.has_value());
  CHECK(g->protocol == 6);
  CHECK(g->src_port == 80);

  CHECK_FALSE(parse_flow(Bytes{}).has_value());
  CHECK_FALSE(parse_flow(Bytes(10, 0x45)).has_value());
  Bytes bad_ihl(28, 0);
  bad_ihl[0] = 0x4f;  // IHL 60 > packet
  CHECK_FALSE(parse_flow(bad_ihl).has_value());
  CHECK_FALSE(parse_flow(Bytes(60, 0x20)).has_value());
}
