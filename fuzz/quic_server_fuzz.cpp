// libFuzzer target over the QUIC server core's datagram input
// (quic::ServerCore::on_datagram): Initials, short headers, Version
// Negotiation triggers, STUN look-alikes and garbage, from a handful of client
// addresses, with the core kept across inputs and its timers run as simulated
// time passes. Nothing may crash, and the core's connection caps must hold.
//
// Each input is split into datagrams by a 2-byte length prefix, so one input
// can carry a sequence (an Initial, then what follows it).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>

#include "transport/core/random.hpp"
#include "transport/quic/server_core.hpp"
#include "transport/tls/tls.hpp"

using namespace quiclab;

namespace {

struct NullSink final : quic::PacketSink {
  std::size_t packets = 0;
  quic::SendResult send(const quic::Path&, ByteView data, std::size_t, quic::Ecn) override {
    ++packets;
    return {quic::SendStatus::sent, data.size(), 0};
  }
};

struct World {
  NullSink sink;
  SeededRandom random{1};
  std::unique_ptr<quic::tls::ServerContext> tls;
  std::unique_ptr<quic::ServerCore> core;
  quic::ServerCoreConfig config;
  World() {
    auto dir = std::filesystem::temp_directory_path() / "quiclab-quic-server-fuzz";
    auto certs = tls::generate_self_signed(dir, {"localhost"}, 2, tls::KeyType::ed25519);
    if (!certs) __builtin_trap();
    quic::tls::ServerConfig tc;
    tc.cert_file = certs->cert;
    tc.key_file = certs->key;
    auto ctx = quic::tls::make_server_context(tc);
    if (!ctx) __builtin_trap();
    tls = std::move(*ctx);
    config.max_half_open = 64;
    config.auto_retry_half_open = 32;
    config.max_connections = 128;
    config.handshake_timeout = 2 * kNanosPerSecond;
    core = std::make_unique<quic::ServerCore>(config, *tls, sink, nullptr, random);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;
  static Timestamp now = 1'000 * kNanosPerSecond;
  static const SocketAddress server = *SocketAddress::from_ip("192.0.2.1", 443);
  static const SocketAddress clients[] = {
      *SocketAddress::from_ip("198.51.100.1", 40000), *SocketAddress::from_ip("198.51.100.1", 40001),
      *SocketAddress::from_ip("198.51.100.2", 40000), *SocketAddress::from_ip("198.51.100.3", 50000)};
  std::size_t off = 0, n = 0;
  while (off + 3 <= size && n++ < 16) {
    const std::uint8_t sel = data[off];
    std::size_t len = (std::size_t{data[off + 1]} << 8) | data[off + 2];
    off += 3;
    len = std::min(len, size - off);
    w.core->on_datagram(quic::Path{server, clients[sel & 3]}, ByteView(data + off, len),
                        static_cast<quic::Ecn>((sel >> 2) & 3), now);
    off += len;
    now += (sel >> 4) * 10 * kNanosPerMilli;
  }
  w.core->flush(now);
  if (auto e = w.core->expiry(); e && *e <= now + kNanosPerSecond) {
    now = std::max(now, *e);
    w.core->handle_expiry(now);
  }
  if (w.core->half_open_count() > w.config.max_half_open) __builtin_trap();
  if (w.core->connection_count() > w.config.max_connections) __builtin_trap();
  return 0;
}
