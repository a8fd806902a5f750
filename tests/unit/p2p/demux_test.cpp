// The peer's demultiplexer: STUN by its whole header and then by source,
// ChannelData only from the TURN server, everything else QUIC, including
// greased QUIC packets whose first byte is in STUN's 0x00-0x3F range.
#include "p2p/demux.hpp"

#include <catch2/catch.hpp>

#include "p2p/stun.hpp"
#include "transport/core/datagram_kind.hpp"

using namespace quiclab;
using p2p::Route;

namespace {
SocketAddress addr(const char* ip, std::uint16_t port) { return *SocketAddress::from_ip(ip, port); }

Bytes binding_request() {
  stun::Message m;
  m.transaction_id = stun::random_transaction_id();
  m.add_string(stun::attr::kSoftware, "quiclab demux test");
  stun::EncodeOptions o;
  o.fingerprint = true;
  return stun::encode(m, o);
}
}  // namespace

TEST_CASE("demux: a STUN message is recognised by its whole header", "[p2p][demux]") {
  auto stun = binding_request();
  CHECK(is_stun_message(stun));
  // Every single-byte change of the cookie, and any length mismatch, is not STUN.
  for (std::size_t i = 4; i < 8; ++i) {
    auto b = stun;
    b[i] ^= 0x01;
    CHECK_FALSE(is_stun_message(b));
  }
  auto longer = stun;
  longer.push_back(0);
  CHECK_FALSE(is_stun_message(longer));
  CHECK_FALSE(is_stun_message(ByteView(stun).first(stun.size() - 4)));
  auto odd_length = stun;
  odd_length[3] = static_cast<std::uint8_t>(odd_length[3] + 1);
  CHECK_FALSE(is_stun_message(odd_length));
  auto high_bits = stun;
  high_bits[0] |= 0x40;
  CHECK_FALSE(is_stun_message(high_bits));
  CHECK_FALSE(is_stun_message(ByteView(stun).first(19)));
}

TEST_CASE("demux: routes by content, then by source", "[p2p][demux]") {
  p2p::Demultiplexer d;
  auto rendezvous = addr("192.0.2.1", 3478);
  auto turn = addr("192.0.2.2", 3478);
  auto peer = addr("198.51.100.7", 40000);
  auto stun = binding_request();
  // Before the servers are known, all STUN goes to the check agent.
  CHECK(d.route(rendezvous, stun) == Route::connectivity_check);
  d.set_rendezvous_server(rendezvous);
  d.set_turn_server(turn);
  CHECK(d.route(rendezvous, stun) == Route::rendezvous);
  CHECK(d.route(peer, stun) == Route::connectivity_check);
  CHECK(d.route(turn, stun) == Route::turn);
  // Same IP, other port: not the rendezvous server.
  CHECK(d.route(addr("192.0.2.1", 3479), stun) == Route::connectivity_check);

  // ChannelData (channel 0x4001, 5 bytes, padded to 8) only from the TURN server.
  Bytes channel = {0x40, 0x01, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0, 0, 0};
  CHECK(is_channel_data(channel));
  CHECK(d.route(turn, channel) == Route::turn);
  CHECK(d.route(peer, channel) == Route::quic);
  // A QUIC short header from the TURN server's address whose length field
  // does not fit is not ChannelData.
  Bytes short_header(1200, 0x5a);
  short_header[0] = 0x41;
  CHECK_FALSE(is_channel_data(short_header));
  CHECK(d.route(turn, short_header) == Route::quic);
}

TEST_CASE("demux: greased QUIC packets in the STUN byte range stay QUIC", "[p2p][demux]") {
  p2p::Demultiplexer d;
  d.set_rendezvous_server(addr("192.0.2.1", 3478));
  auto from = addr("192.0.2.1", 3478);
  // Short-header packets with the fixed bit greased away (first byte
  // 0x00-0x3F), seeded pseudo-random contents of realistic sizes: none may be
  // taken for STUN, even from the rendezvous server's address.
  std::uint64_t x = 0x9e3779b97f4a7c15ULL;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int i = 0; i < 20000; ++i) {
    Bytes pkt(21 + next() % 1400);
    for (auto& b : pkt) b = static_cast<std::uint8_t>(next());
    pkt[0] = static_cast<std::uint8_t>(pkt[0] & 0x3f);
    INFO("packet " << i);
    REQUIRE(d.route(from, pkt) == Route::quic);
  }
  CHECK(p2p::route_name(Route::quic) == "quic");
}
