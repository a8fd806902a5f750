// libFuzzer target over the TURN client's receive path (p2p/turn_client.*):
// ChannelData framing, Data indications and responses from the server's
// address, fed to a client that the harness first brings to an allocation
// with a bound channel (it answers the 401, the Allocate and the ChannelBind
// itself, signed with the right key, since a fuzzer cannot forge the HMAC).
// Invariants (a violation traps): decode_channel_data never claims more bytes
// than the datagram holds; an unwrapped datagram is never larger than what came in.
#include <cstddef>
#include <cstdint>

#include "p2p/turn_client.hpp"

using namespace quiclab;

namespace {

stun::Message answer_to(const Bytes& request, stun::MessageClass cls) {
  auto m = stun::decode(request);
  if (!m) __builtin_trap();
  return stun::make_response(*m, cls);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ByteView input(data, size);
  if (auto cd = turn::decode_channel_data(input); cd && cd->data.size() + 4 > size) __builtin_trap();

  SeededRandom random(1);
  turn::ClientConfig config;
  config.credentials = {"fuzz", "pw"};
  turn::Client client(config, random);
  client.start(0);
  auto out = client.take_datagrams();
  auto challenge = answer_to(out.at(0), stun::MessageClass::ErrorResponse);
  challenge.add_error_code(401, "Unauthorized");
  challenge.add_string(stun::attr::kRealm, "r");
  challenge.add_string(stun::attr::kNonce, "n");
  (void)client.handle_datagram(stun::encode(challenge), 0);
  out = client.take_datagrams();
  stun::EncodeOptions sign;
  sign.integrity_key = turn::long_term_key(config.credentials, "r", turn::PasswordAlgorithm::md5);
  auto ok = answer_to(out.at(0), stun::MessageClass::SuccessResponse);
  ok.add_xor_address(turn::attr::kXorRelayedAddress, SocketAddress::from_ip("198.51.100.2", 49152).value());
  ok.add_u32(turn::attr::kLifetime, 600);
  (void)client.handle_datagram(stun::encode(ok, sign), 0);
  const auto peer = SocketAddress::from_ip("203.0.113.2", 5000).value();
  client.bind_channel(peer, 0);
  for (auto& d : client.take_datagrams()) {
    auto m = stun::decode(d);
    if (m && m->method == turn::method::kChannelBind)
      (void)client.handle_datagram(stun::encode(answer_to(d, stun::MessageClass::SuccessResponse), sign), 0);
  }
  if (client.state() != turn::Client::State::allocated || !client.channel(peer)) __builtin_trap();

  // The input: datagrams separated by a two-byte length prefix; a short tail is one more.
  Timestamp now = kNanosPerMilli;
  for (std::size_t off = 0; off < size;) {
    std::size_t len = size - off;
    if (len >= 2) {
      const std::size_t want = (std::size_t{data[off]} << 8) | data[off + 1];
      if (want <= len - 2) {
        off += 2;
        len = want;
      }
    }
    ByteView d(data + off, len);
    if (auto inner = client.handle_datagram(d, now); inner && inner->data.size() > d.size()) __builtin_trap();
    client.handle_expiry(now);
    (void)client.take_datagrams();
    (void)client.take_events();
    (void)client.wrap(peer, d);
    now += 10 * kNanosPerSecond;
    off += len;
  }
  return 0;
}
