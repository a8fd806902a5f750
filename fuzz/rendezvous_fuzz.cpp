// libFuzzer target over the rendezvous protocol (docs/rendezvous-protocol.md):
// the server's datagram handler (Register, Refresh, Lookup, Introduce and
// Binding with every attribute, from a few sources and sockets, with its
// state kept across inputs so registrations and rate limits are exercised),
// and the client's handling of whatever comes back. No input may crash, hang,
// leak or let the server's tables grow past their bounds.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "p2p/rendezvous_client.hpp"
#include "p2p/rendezvous_server.hpp"

using namespace quiclab;
using namespace quiclab::rendezvous;

namespace {

SocketAddress addr(const char* ip, std::uint16_t port) { return *SocketAddress::from_ip(ip, port); }

ServerConfig server_config() {
  ServerConfig c;
  c.local[kPrimary] = addr("192.0.2.1", 3478);
  c.local[kAltPort] = addr("192.0.2.1", 3479);
  c.local[kAltIp] = addr("192.0.2.2", 3478);
  c.local[kAltBoth] = addr("192.0.2.2", 3479);
  c.max_registrations = 64;
  c.max_tracked_sources = 32;
  c.max_introductions = 16;
  return c;
}

ClientConfig client_config() {
  ClientConfig c;
  c.name = "fuzz-peer";
  c.key = Bytes(32, 0x42);
  c.host_candidates = {addr("10.0.0.2", 40000)};
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Server server(server_config());
  static Timestamp now = 1'000 * kNanosPerSecond;
  static const SocketAddress sources[] = {addr("198.51.100.1", 5000), addr("198.51.100.1", 5001),
                                          addr("198.51.100.2", 6000), addr("2001:db8::7", 7000)};
  if (size == 0) return 0;
  // The first byte chooses the socket and the source; the rest is the datagram.
  const std::uint8_t sel = data[0];
  ByteView datagram(data + 1, size - 1);
  now += (sel & 0x0f) * kNanosPerMilli * 50;
  std::vector<OutgoingDatagram> out;
  server.handle_datagram(sel & 3, sources[(sel >> 2) & 3], datagram, now, out);
  if ((sel & 0xf0) == 0xf0) server.handle_expiry(now);
  if (server.registrations() > server.config().max_registrations) __builtin_trap();
  if (server.tracked_sources() > server.config().max_tracked_sources) __builtin_trap();
  if (server.introductions_in_flight() > server.config().max_introductions) __builtin_trap();
  (void)server.take_datagrams();

  // A client with transactions in flight reads the raw input and the server's answers.
  Client client(client_config());
  client.register_name(now);
  client.lookup("other", now);
  client.introduce("other", now);
  for (auto& d : client.take_datagrams()) {
    server.handle_datagram(kPrimary, sources[0], d, now, out);
  }
  (void)client.handle_datagram(datagram, now);
  for (const auto& o : out) (void)client.handle_datagram(o.data, now);
  (void)client.take_events();
  return 0;
}
