// An in-memory QUIC world on a ManualClock: the HTTP/3 client core
// (h3::ClientConnection) and the QUIC server core with the HTTP/3
// application (quic::ServerCore + h3::application_factory) exchange datagrams
// through two directions of the link emulator's sans-IO scheduler
// (linkem::LinkDirection), with no socket, no loop and no thread.
//
// Every source of randomness that can be seeded is: the link's loss and
// jitter, both cores' connection IDs, tokens and ngtcp2's own draws
// (greasing, padding). GnuTLS's randomness cannot be seeded; the server's
// certificate is Ed25519, whose signatures are deterministic and of one size,
// so GnuTLS changes bytes but never a packet's size or time. The same seed
// therefore gives the same event sequence (events()) on every run.
//
// Datagrams arriving at the client pass through the peer's demultiplexer
// (p2p::Demultiplexer), and inject_stun() puts STUN messages from the
// "rendezvous server" onto the same path, so a test can show STUN and a
// (greased) QUIC connection sharing one socket's worth of traffic.
//
// Nothing touches the filesystem but the certificate: the client's sessions
// (tickets for 0-RTT) are kept in memory through ClientConnection's
// on_session and fed back on the next connect(), and with QuicSimConfig::qlog
// both cores write their qlog traces into in-memory sinks.
//
// This is the harness the hole-punching simulations build on.
#pragma once

#include <fmt/format.h>
#include <ngtcp2/ngtcp2.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/linkem/link_emulator.hpp"
#include "p2p/demux.hpp"
#include "transport/core/clock.hpp"
#include "transport/core/random.hpp"
#include "transport/h3/client.hpp"
#include "transport/h3/server.hpp"
#include "transport/http/app.hpp"
#include "transport/quic/server_core.hpp"
#include "transport/tls/tls.hpp"

namespace quiclab::sim {

struct QuicSimConfig {
  std::uint64_t seed = 1;
  linkem::LinkConfig c2s;  ///< client -> server direction (its seed is derived from `seed`)
  linkem::LinkConfig s2c;
  bool qlog = false;                                  ///< both cores write qlog traces into memory (qlog_traces())
  std::optional<std::int64_t> client_unix_offset_ns;  ///< the client core's wall clock (qlog reference_time)
};

/// A qlog sink that keeps every connection's trace in memory.
struct MemoryQlog {
  struct Trace {
    Bytes bytes;
    bool finished = false;
  };
  std::map<std::string, Trace, std::less<>> traces;  // by connection ID

  quic::QlogSink sink() {
    return [this](std::string_view id) -> Result<std::unique_ptr<quic::QlogWriter>> {
      struct Writer final : quic::QlogWriter {
        Trace* trace;
        explicit Writer(Trace* t) : trace(t) {}
        void write(ByteView data) override { trace->bytes.insert(trace->bytes.end(), data.begin(), data.end()); }
        void finish() override { trace->finished = true; }
      };
      return std::unique_ptr<quic::QlogWriter>(std::make_unique<Writer>(&traces[std::string(id)]));
    };
  }
};

class QuicSim {
 public:
  static constexpr Timestamp kStart = 1'000'000 * kNanosPerSecond;

  explicit QuicSim(const QuicSimConfig& cfg, const std::filesystem::path& cert_dir)
      : cfg_(cfg),
        clock_(kStart),
        client_random_(cfg.seed * 2 + 1),
        server_random_(cfg.seed * 2 + 2),
        c2s_(with_seed(cfg.c2s, cfg.seed * 7 + 3), kStart),
        s2c_(with_seed(cfg.s2c, cfg.seed * 7 + 5), kStart),
        app_(http::AppConfig{}, metrics_) {
    c2s_.set_observer([this](const linkem::LinkEvent& e) { log_link("c2s", e); });
    s2c_.set_observer([this](const linkem::LinkEvent& e) { log_link("s2c", e); });
    auto certs = tls::generate_self_signed(cert_dir, {"localhost", "127.0.0.1"}, 2, tls::KeyType::ed25519);
    REQUIRE(certs.ok());
    quic::tls::ServerConfig tc;
    tc.cert_file = certs->cert;
    tc.key_file = certs->key;
    auto ctx = quic::tls::make_server_context(tc);
    REQUIRE(ctx.ok());
    server_tls_ = std::move(*ctx);
    quic::ServerCoreConfig qc;
    // Loopback-sized datagrams would make the sizes depend on this machine's
    // loopback MTU; the simulated path is an ordinary 1500-byte one.
    qc.udp_payload.forced = 1452;
    if (cfg.qlog) qc.qlog = server_qlog_.sink();
    server_config_.quic = qc;
    sink_.sim = this;
    core_ = std::make_unique<quic::ServerCore>(qc, *server_tls_, sink_, h3::application_factory(app_, server_config_),
                                               server_random_);
    demux_.set_rendezvous_server(rendezvous_);
  }

  /// Opens the client connection (call again after close_client() to resume).
  void connect(http::ClientOptions options = {}) {
    h3::ClientConnection::Config c;
    c.origin = *http::Url::parse("https://127.0.0.1:4433/");
    options.insecure = true;
    options.keep_body = true;
    options.max_udp_payload = 1452;
    c.options = options;
    c.local = client_addr_;
    c.remote = server_addr_;
    c.random = &client_random_;
    c.resume = session_;
    c.on_session = [this](const h3::StoredSession& s) {
      session_ = s;
      ++sessions_reported_;
    };
    if (cfg_.qlog) c.qlog = client_qlog_.sink();
    c.unix_offset_ns = cfg_.client_unix_offset_ns;
    auto conn = h3::ClientConnection::create(c, clock_.now());
    REQUIRE(conn.ok());
    client_ = std::move(*conn);
    note("client connect");
  }

  /// GET `path`; the response lands in responses() when complete.
  void get(const std::string& path) {
    http::ClientRequest rq;
    rq.url = *http::Url::parse("https://127.0.0.1:4433" + path);
    client_->submit(std::move(rq), nullptr, nullptr);
  }

  /// Queues a STUN message from the rendezvous server to the client at `at`.
  void inject_stun(Timestamp at, Bytes message) { stun_.push_back({at, std::move(message)}); }

  /// Runs until `done()` or `limit` of simulated time; false on the limit.
  template <class Pred>
  bool run_until(Pred done, Timestamp limit) {
    const Timestamp end = clock_.now() + limit;
    for (int steps = 0; steps < 5'000'000; ++steps) {
      step();
      if (done()) return true;
      auto next = next_event();
      if (!next || *next > end) return false;
      clock_.set(std::max(clock_.now(), *next));
    }
    return false;
  }

  /// Drops the client (its last reported session stays) and lets the server time it out.
  void close_client() {
    client_->close(false, clock_.now());
    step();
    client_.reset();
    note("client closed");
  }

  h3::ClientConnection& client() { return *client_; }
  quic::ServerCore& server() { return *core_; }
  ManualClock& clock() { return clock_; }
  const std::vector<http::ClientResponse>& responses() const { return responses_; }
  std::optional<Status> ready() const { return ready_; }
  const std::vector<std::string>& events() const { return events_; }
  std::size_t stun_routed() const { return stun_routed_; }
  std::size_t quic_routed() const { return quic_routed_; }
  /// QUIC datagrams to the client whose first byte was 0x00-0x3F (fixed bit greased away).
  std::size_t greased_to_client() const { return greased_to_client_; }
  /// The client's last reported session (resumed by the next connect()), and how many were reported.
  const std::optional<h3::StoredSession>& session() const { return session_; }
  std::size_t sessions_reported() const { return sessions_reported_; }
  /// qlog traces by connection ID (with QuicSimConfig::qlog).
  const MemoryQlog& client_qlog() const { return client_qlog_; }
  const MemoryQlog& server_qlog() const { return server_qlog_; }
  const linkem::LinkDirection& c2s() const { return c2s_; }
  const linkem::LinkDirection& s2c() const { return s2c_; }
  Timestamp elapsed() const { return clock_.now() - kStart; }

 private:
  struct Sink final : quic::PacketSink {
    QuicSim* sim = nullptr;
    quic::SendResult send(const quic::Path&, ByteView data, std::size_t segment_size, quic::Ecn) override {
      sim->offer(sim->s2c_, data, segment_size);
      return {quic::SendStatus::sent, data.size(), 0};
    }
  };

  static linkem::LinkConfig with_seed(linkem::LinkConfig c, std::uint64_t seed) {
    c.seed = seed;
    return c;
  }

  void offer(linkem::LinkDirection& dir, ByteView data, std::size_t segment_size) {
    std::size_t seg = segment_size ? segment_size : data.size();
    for (std::size_t off = 0; off < data.size(); off += seg) {
      auto n = std::min(seg, data.size() - off);
      dir.offer(clock_.now(), Bytes(data.begin() + static_cast<std::ptrdiff_t>(off),
                                    data.begin() + static_cast<std::ptrdiff_t>(off + n)));
    }
  }

  void note(const std::string& what) { events_.push_back(fmt::format("{:>12} {}", elapsed(), what)); }

  void log_link(const char* dir, const linkem::LinkEvent& e) {
    if (e.kind == linkem::LinkEvent::Kind::kArrival) {
      events_.push_back(
          fmt::format("{:>12} {} #{} {} B {}", e.time - kStart, dir, e.seq, e.size, linkem::fate_name(e.fate)));
    }
  }

  void client_write() {
    if (!client_) return;
    client_->write(clock_.now(), [this](const h3::ClientConnection::Burst& b) {
      offer(c2s_, b.data, b.segment_size);
      return b.data.size();
    });
    auto ev = client_->take_events();
    if (ev.ready && !ready_) {
      ready_ = ev.ready;
      note(ev.ready->ok() ? "handshake done" : "connection failed: " + ev.ready->error().message);
    }
    for (auto& c : ev.completions) {
      note(fmt::format("response {} {} B{}", c.response.status, c.response.body_bytes,
                       c.response.error ? " error " + c.response.error->message : ""));
      responses_.push_back(std::move(c.response));
    }
  }

  void step() {
    const Timestamp now = clock_.now();
    std::vector<linkem::Delivery> due;
    c2s_.take_due(now, due);
    for (auto& d : due) core_->on_datagram(quic::Path{server_addr_, client_addr_}, d.packet, quic::Ecn::not_ect, now);
    if (!due.empty()) core_->flush(now);
    due.clear();
    s2c_.take_due(now, due);
    while (!stun_.empty() && stun_.front().at <= now) {
      route_to_client(rendezvous_, stun_.front().message);
      stun_.erase(stun_.begin());
    }
    for (auto& d : due) route_to_client(server_addr_, d.packet);
    if (auto e = core_->expiry(); e && *e <= now) core_->handle_expiry(now);
    if (auto e = client_ ? client_->expiry() : std::nullopt; e && *e <= now) client_->handle_expiry(now);
    client_write();
  }

  void route_to_client(const SocketAddress& from, ByteView datagram) {
    switch (demux_.route(from, datagram)) {
      case p2p::Route::rendezvous:
      case p2p::Route::connectivity_check:
        ++stun_routed_;
        note(fmt::format("stun {} B", datagram.size()));
        return;
      case p2p::Route::turn:
        FAIL("no TURN server in this world");
        return;
      case p2p::Route::quic:
        ++quic_routed_;
        if (!datagram.empty() && datagram[0] < 0x40) ++greased_to_client_;
        if (client_) client_->read(client_addr_, from, datagram, 0, clock_.now());
        return;
    }
  }

  std::optional<Timestamp> next_event() const {
    std::optional<Timestamp> t;
    auto take = [&t](std::optional<Timestamp> x) {
      if (x && (!t || *x < *t)) t = x;
    };
    take(c2s_.next_delivery());
    take(s2c_.next_delivery());
    take(core_->expiry());
    if (client_) take(client_->expiry());
    if (!stun_.empty()) take(stun_.front().at);
    return t;
  }

  struct PendingStun {
    Timestamp at;
    Bytes message;
  };

  QuicSimConfig cfg_;
  ManualClock clock_;
  SeededRandom client_random_, server_random_;
  linkem::LinkDirection c2s_, s2c_;
  MemoryQlog client_qlog_, server_qlog_;  // before the cores, whose writers point into them
  http::Metrics metrics_;
  http::App app_;
  h3::ServerConfig server_config_;
  std::unique_ptr<quic::tls::ServerContext> server_tls_;
  Sink sink_;
  std::unique_ptr<quic::ServerCore> core_;
  std::unique_ptr<h3::ClientConnection> client_;
  p2p::Demultiplexer demux_;
  SocketAddress client_addr_ = *SocketAddress::from_ip("10.0.0.2", 50000);
  SocketAddress server_addr_ = *SocketAddress::from_ip("203.0.113.10", 4433);
  SocketAddress rendezvous_ = *SocketAddress::from_ip("192.0.2.1", 3478);
  std::vector<PendingStun> stun_;
  std::vector<http::ClientResponse> responses_;
  std::optional<Status> ready_;
  std::vector<std::string> events_;
  std::size_t stun_routed_ = 0, quic_routed_ = 0, greased_to_client_ = 0;
  std::optional<h3::StoredSession> session_;
  std::size_t sessions_reported_ = 0;
};

}  // namespace quiclab::sim
