// The TURN client (p2p/turn_client.*) on simulated time against a small TURN
// server model written here: the 401 and 438 flows (MESSAGE-INTEGRITY and
// MESSAGE-INTEGRITY-SHA256), wrong credentials, refreshes of the allocation,
// permissions and channels over half an hour against the model's expiry,
// Send/Data indications before the channel and ChannelData after, release,
// timeouts, forged answers, and the same bytes for the same seed.
#include "p2p/turn_client.hpp"

#include <catch2/catch.hpp>
#include <map>
#include <unordered_map>

#include "transport/core/datagram_kind.hpp"

using namespace quiclab;
using turn::Client;

namespace {

SocketAddress addr(const char* ip, std::uint16_t port) { return SocketAddress::from_ip(ip, port).value(); }
constexpr Timestamp kSec = kNanosPerSecond;

// A TURN server as RFC 8656 describes it, for one client, with its clock
// given on each call. Permissions last 300 s and channels 600 s exactly, so a
// client that refreshes late loses data here.
struct TurnModel {
  std::string realm = "quiclab.lab";
  std::string nonce = "nonce-1";
  std::map<std::string, std::string> users{{"alice", "pw"}};
  bool offer_sha256 = false;
  bool silent = false;
  SocketAddress client = addr("192.0.2.2", 40000);
  SocketAddress relayed = addr("198.51.100.2", 49200);
  std::optional<Timestamp> allocation_expires;
  std::unordered_map<SocketAddress, Timestamp> permissions;  // IP (port 0) -> expiry
  std::map<std::uint16_t, std::pair<SocketAddress, Timestamp>> channels;
  std::vector<std::pair<SocketAddress, Bytes>> relayed_out;  // what reached peers
  std::uint64_t dropped_no_permission = 0, dropped_no_channel = 0, refreshes = 0, permission_requests = 0,
                channel_binds = 0, channel_data = 0, send_indications = 0, auth_rejects = 0;

  static SocketAddress ip_of(const SocketAddress& a) {
    SocketAddress ip = a;
    ip.set_port(0);
    return ip;
  }
  bool permitted(const SocketAddress& peer, Timestamp now) const {
    auto it = permissions.find(ip_of(peer));
    return it != permissions.end() && now < it->second;
  }
  bool allocated(Timestamp now) const { return allocation_expires && now < *allocation_expires; }

  stun::Message error(const stun::Message& req, int code, const char* reason, bool challenge) const {
    auto r = stun::make_response(req, stun::MessageClass::ErrorResponse);
    r.add_error_code(code, reason);
    if (challenge) {
      r.add_string(stun::attr::kRealm, realm);
      r.add_string(stun::attr::kNonce, nonce);
      if (offer_sha256) {
        const std::uint8_t algs[8] = {0, 2, 0, 0, 0, 1, 0, 0};  // SHA-256, MD5
        r.add(stun::attr::kPasswordAlgorithms, ByteView(algs, 8));
      }
    }
    return r;
  }

  // One datagram from the client; the answers to it.
  std::vector<Bytes> handle(ByteView data, Timestamp now) {
    std::vector<Bytes> out;
    if (silent) return out;
    if (data[0] >= 0x40 && data[0] <= 0x4F) {
      auto cd = turn::decode_channel_data(data);
      REQUIRE(cd);
      auto it = channels.find(cd->channel);
      if (!allocated(now) || it == channels.end() || now >= it->second.second || !permitted(it->second.first, now)) {
        ++dropped_no_channel;
        return out;
      }
      ++channel_data;
      relayed_out.emplace_back(it->second.first, Bytes(cd->data.begin(), cd->data.end()));
      return out;
    }
    auto m = stun::decode(data);
    REQUIRE(m);
    if (m->message_class == stun::MessageClass::Indication) {
      REQUIRE(m->method == turn::method::kSend);
      auto peer = m->xor_address(turn::attr::kXorPeerAddress).value().value();
      ++send_indications;
      if (!allocated(now) || !permitted(peer, now)) {
        ++dropped_no_permission;
        return out;
      }
      relayed_out.emplace_back(peer, m->find(turn::attr::kData)->value);
      return out;
    }
    REQUIRE(m->message_class == stun::MessageClass::Request);
    // Long-term credentials.
    auto user = m->string(stun::attr::kUsername);
    auto nonce_in = m->string(stun::attr::kNonce);
    if (!user || !m->find(stun::attr::kRealm) || !nonce_in) {
      out.push_back(stun::encode(error(*m, 401, "Unauthorized", true)));
      return out;
    }
    auto pw = users.find(*user);
    const bool sha = offer_sha256 && m->find(stun::attr::kPasswordAlgorithm);
    Bytes key = turn::long_term_key({*user, pw == users.end() ? "" : pw->second}, realm,
                                    sha ? turn::PasswordAlgorithm::sha256 : turn::PasswordAlgorithm::md5);
    const auto check = sha ? stun::check_integrity_sha256(*m, key) : stun::check_integrity(*m, key);
    if (pw == users.end() || check != stun::IntegrityCheck::Ok) {
      ++auth_rejects;
      out.push_back(stun::encode(error(*m, 401, "Unauthorized", true)));
      return out;
    }
    if (*nonce_in != nonce) {
      out.push_back(stun::encode(error(*m, 438, "Stale Nonce", true)));
      return out;
    }
    stun::EncodeOptions sign;
    if (sha)
      sign.integrity_sha256_key = key;
    else
      sign.integrity_key = key;
    auto ok = stun::make_response(*m, stun::MessageClass::SuccessResponse);
    switch (m->method) {
      case turn::method::kAllocate: {
        if (allocated(now)) {
          out.push_back(stun::encode(error(*m, 437, "Allocation Mismatch", false), sign));
          return out;
        }
        const std::uint32_t life = m->u32(turn::attr::kLifetime).value().value_or(600);
        allocation_expires = now + Timestamp{std::min<std::uint32_t>(life, 3600)} * kSec;
        ok.add_xor_address(turn::attr::kXorRelayedAddress, relayed);
        ok.add_xor_address(stun::attr::kXorMappedAddress, client);
        ok.add_u32(turn::attr::kLifetime, std::min<std::uint32_t>(life, 3600));
        break;
      }
      case turn::method::kRefresh: {
        const std::uint32_t life = m->u32(turn::attr::kLifetime).value().value_or(600);
        if (!allocated(now)) {
          out.push_back(stun::encode(error(*m, 437, "Allocation Mismatch", false), sign));
          return out;
        }
        ++refreshes;
        if (life == 0)
          allocation_expires.reset();
        else
          allocation_expires = now + Timestamp{life} * kSec;
        ok.add_u32(turn::attr::kLifetime, life);
        break;
      }
      case turn::method::kCreatePermission: {
        ++permission_requests;
        auto peer = m->xor_address(turn::attr::kXorPeerAddress).value().value();
        if (peer.ip().rfind("10.", 0) == 0) {
          out.push_back(stun::encode(error(*m, 403, "Forbidden IP", false), sign));
          return out;
        }
        permissions[ip_of(peer)] = now + 300 * kSec;
        break;
      }
      case turn::method::kChannelBind: {
        ++channel_binds;
        const std::uint16_t number =
            static_cast<std::uint16_t>(m->u32(turn::attr::kChannelNumber).value().value() >> 16);
        auto peer = m->xor_address(turn::attr::kXorPeerAddress).value().value();
        channels[number] = {peer, now + 600 * kSec};
        permissions[ip_of(peer)] = now + 300 * kSec;
        break;
      }
      default:
        FAIL("unexpected method");
    }
    out.push_back(stun::encode(ok, sign));
    return out;
  }

  // A peer sends to the relayed address: what the client receives.
  std::optional<Bytes> from_peer(const SocketAddress& peer, ByteView data, Timestamp now) {
    if (!allocated(now) || !permitted(peer, now)) return std::nullopt;
    for (const auto& [number, ch] : channels)
      if (ch.first == peer && now < ch.second) return turn::encode_channel_data(number, data);
    stun::Message m;
    m.message_class = stun::MessageClass::Indication;
    m.method = turn::method::kData;
    m.add_xor_address(turn::attr::kXorPeerAddress, peer);
    m.add(turn::attr::kData, data);
    return stun::encode(m);
  }
};

// Client and model on one clock, datagrams delivered at once.
struct Rig {
  ManualClock clock;
  SeededRandom random{7};
  TurnModel model;
  std::unique_ptr<Client> client;
  std::vector<turn::Event> events;
  std::vector<Bytes> wire;  // every datagram the client sent, in order
  explicit Rig(turn::Credentials c = {"alice", "pw"}) {
    turn::ClientConfig config;
    config.credentials = std::move(c);
    client = std::make_unique<Client>(config, random);
  }
  void pump() {
    for (int round = 0; round < 16; ++round) {
      auto out = client->take_datagrams();
      for (auto& e : client->take_events()) events.push_back(std::move(e));
      if (out.empty()) return;
      for (auto& d : out) {
        wire.push_back(d);
        for (auto& answer : model.handle(d, clock.now())) (void)client->handle_datagram(answer, clock.now());
      }
    }
  }
  // Runs timers until `until`, a second at a time (or sooner when the client asks).
  void run_until(Timestamp until) {
    while (clock.now() < until) {
      Timestamp next = std::min(until, clock.now() + kSec);
      if (auto e = client->expiry()) next = std::min(next, std::max(*e, clock.now()));
      clock.set(next);
      client->handle_expiry(clock.now());
      pump();
    }
  }
  template <class T>
  std::size_t count() const {
    std::size_t n = 0;
    for (const auto& e : events) n += std::holds_alternative<T>(e);
    return n;
  }
  template <class T>
  const T* last() const {
    for (auto it = events.rbegin(); it != events.rend(); ++it)
      if (auto* p = std::get_if<T>(&*it)) return p;
    return nullptr;
  }
  void allocate() {
    client->start(clock.now());
    pump();
  }
};

}  // namespace

TEST_CASE("turn: coturn's time-limited credentials", "[turn]") {
  // Checked against `printf %s 1700000000:alice | openssl dgst -sha1 -hmac s3cret -binary | base64`.
  auto c = turn::time_limited_credentials("s3cret", "alice", 1700000000);
  CHECK(c.username == "1700000000:alice");
  CHECK(c.password == "TtElzSjT0GdnTQ9xdcRNxx96yQs=");
  CHECK(turn::time_limited_credentials("s3cret", "", 1700000000).username == "1700000000");
  // MD5("alice:quiclab.lab:pw"), by md5sum.
  auto key = turn::long_term_key({"alice", "pw"}, "quiclab.lab", turn::PasswordAlgorithm::md5);
  CHECK(to_hex(key) == "d169ae4c847e6296395f776f84f66866");
  CHECK(turn::long_term_key({"alice", "pw"}, "quiclab.lab", turn::PasswordAlgorithm::sha256).size() == 32);
}

TEST_CASE("turn: ChannelData framing", "[turn]") {
  const std::uint8_t payload[3] = {1, 2, 3};
  auto d = turn::encode_channel_data(0x4001, ByteView(payload, 3));
  REQUIRE(d.size() == 7);
  auto cd = turn::decode_channel_data(d);
  REQUIRE(cd);
  CHECK(cd->channel == 0x4001);
  CHECK(Bytes(cd->data.begin(), cd->data.end()) == Bytes{1, 2, 3});
  d.push_back(0);  // UDP may carry the padding
  CHECK(turn::decode_channel_data(d));
  CHECK(!turn::decode_channel_data(ByteView(d.data(), 3)));
  Bytes bad_channel{0x50, 0x00, 0x00, 0x00};
  CHECK(turn::decode_channel_data(bad_channel).error().message.find("outside") != std::string::npos);
  Bytes overrun{0x40, 0x00, 0x00, 0x09, 1, 2};
  CHECK(turn::decode_channel_data(overrun).error().message.find("runs past") != std::string::npos);
}

TEST_CASE("turn: Allocate answers the 401 with MESSAGE-INTEGRITY and gets a relayed address", "[turn]") {
  Rig rig;
  rig.allocate();
  REQUIRE(rig.client->state() == Client::State::allocated);
  auto* a = rig.last<turn::Allocated>();
  REQUIRE(a);
  CHECK(a->relayed == rig.model.relayed);
  CHECK(a->mapped == rig.model.client);
  CHECK(a->lifetime_s == 600);
  CHECK(rig.client->stats().auth_challenges == 1);
  CHECK(rig.client->algorithm() == turn::PasswordAlgorithm::md5);
  // The first Allocate went unsigned, the second signed; the password is in neither.
  REQUIRE(rig.wire.size() == 2);
  CHECK(!stun::decode(rig.wire[0])->find(stun::attr::kUsername));
  CHECK(stun::decode(rig.wire[1])->find(stun::attr::kMessageIntegrity));
  for (const auto& w : rig.wire) CHECK(std::string(w.begin(), w.end()).find("pw") == std::string::npos);
}

TEST_CASE("turn: a server offering SHA-256 gets MESSAGE-INTEGRITY-SHA256", "[turn]") {
  Rig rig;
  rig.model.offer_sha256 = true;
  rig.allocate();
  REQUIRE(rig.client->state() == Client::State::allocated);
  CHECK(rig.client->algorithm() == turn::PasswordAlgorithm::sha256);
  auto second = stun::decode(rig.wire.at(1)).value();
  CHECK(second.find(stun::attr::kMessageIntegritySha256));
  CHECK(second.find(stun::attr::kPasswordAlgorithm));
  CHECK(second.find(stun::attr::kPasswordAlgorithms));
  CHECK(!second.find(stun::attr::kMessageIntegrity));
}

TEST_CASE("turn: wrong credentials end in a failed allocation with the server's reason", "[turn]") {
  Rig rig({"alice", "wrong"});
  rig.allocate();
  CHECK(rig.client->state() == Client::State::failed);
  auto* f = rig.last<turn::AllocationFailed>();
  REQUIRE(f);
  CHECK(f->code == 401);
  CHECK(f->reason.find("credentials refused") != std::string::npos);
  CHECK(rig.wire.size() == 2);  // one unsigned, one signed: no loop
}

TEST_CASE("turn: a stale nonce is replaced and the request repeated", "[turn]") {
  Rig rig;
  rig.allocate();
  rig.model.nonce = "nonce-2";
  rig.client->create_permission(addr("203.0.113.2", 5000), rig.clock.now());
  rig.pump();
  CHECK(rig.client->stats().stale_nonces == 1);
  CHECK(rig.client->has_permission(addr("203.0.113.2", 9999)));  // the port does not matter
  auto* p = rig.last<turn::PermissionResult>();
  REQUIRE(p);
  CHECK(p->ok);
  // A server that never stops saying 438 gets a bounded number of retries.
  const auto before = rig.wire.size();
  rig.model.nonce = "nonce-3";
  rig.client->create_permission(addr("203.0.113.77", 1), rig.clock.now());
  for (int i = 0; i < 10; ++i) {
    for (auto& d : rig.client->take_datagrams()) {
      rig.wire.push_back(d);
      for (auto& answer : rig.model.handle(d, rig.clock.now())) {
        rig.model.nonce += "x";  // the retry will be stale again
        (void)rig.client->handle_datagram(answer, rig.clock.now());
      }
    }
  }
  for (auto& e : rig.client->take_events()) rig.events.push_back(e);
  CHECK(rig.wire.size() - before <= 4);  // first try + 3 retries
  auto* refused = rig.last<turn::PermissionResult>();
  REQUIRE(refused);
  CHECK(!refused->ok);
  CHECK(refused->detail.find("438") != std::string::npos);
}

TEST_CASE("turn: a forbidden peer gets a failed permission, the allocation stays", "[turn]") {
  Rig rig;
  rig.allocate();
  rig.client->create_permission(addr("10.0.0.9", 1), rig.clock.now());
  rig.pump();
  auto* p = rig.last<turn::PermissionResult>();
  REQUIRE(p);
  CHECK(!p->ok);
  CHECK(p->detail.find("403") != std::string::npos);
  CHECK(rig.client->state() == Client::State::allocated);
  // The server's policy does not change: asking again (every check to that
  // address asks) sends nothing more.
  const auto asked = rig.model.permission_requests;
  for (int i = 0; i < 5; ++i) {
    rig.client->create_permission(addr("10.0.0.9", 2), rig.clock.now());
    rig.pump();
  }
  CHECK(rig.model.permission_requests == asked);
}

TEST_CASE("turn: Send indications before the channel, ChannelData after, both directions", "[turn]") {
  Rig rig;
  const auto peer = addr("203.0.113.2", 5000);
  rig.client->create_permission(peer, rig.clock.now());  // queued until the allocation
  rig.allocate();
  REQUIRE(rig.client->has_permission(peer));
  const std::uint8_t hello[5] = {'h', 'e', 'l', 'l', 'o'};
  auto w = rig.client->wrap(peer, ByteView(hello, 5));
  REQUIRE(w);
  CHECK(is_stun_message(*w));
  rig.model.handle(*w, rig.clock.now());
  REQUIRE(rig.model.relayed_out.size() == 1);
  CHECK(rig.model.relayed_out[0].first == peer);
  // Inbound before the channel: a Data indication.
  auto in = rig.model.from_peer(peer, ByteView(hello, 5), rig.clock.now());
  REQUIRE(in);
  auto inner = rig.client->handle_datagram(*in, rig.clock.now());
  REQUIRE(inner);
  CHECK(inner->peer == peer);
  CHECK(!inner->channel);
  CHECK(inner->data == Bytes(hello, hello + 5));

  rig.client->bind_channel(peer, rig.clock.now());
  rig.pump();
  REQUIRE(rig.client->channel(peer));
  w = rig.client->wrap(peer, ByteView(hello, 5));
  REQUIRE(w);
  CHECK((*w)[0] == 0x40);
  CHECK(w->size() == 9);
  rig.model.handle(*w, rig.clock.now());
  CHECK(rig.model.channel_data == 1);
  in = rig.model.from_peer(peer, ByteView(hello, 5), rig.clock.now());
  inner = rig.client->handle_datagram(*in, rig.clock.now());
  REQUIRE(inner);
  CHECK(inner->channel);
  CHECK(inner->peer == peer);
  // ChannelData on a channel we never bound is dropped and counted.
  auto stray = turn::encode_channel_data(0x4abc, ByteView(hello, 5));
  CHECK(!rig.client->handle_datagram(stray, rig.clock.now()));
  CHECK(rig.client->stats().bad_messages == 1);
}

TEST_CASE("turn: half an hour of refreshes: allocation, permission and channel never lapse", "[turn]") {
  Rig rig;
  const auto peer = addr("203.0.113.2", 5000);
  const auto other = addr("192.0.2.130", 6000);
  rig.allocate();
  rig.client->bind_channel(peer, rig.clock.now());
  rig.client->create_permission(other, rig.clock.now());
  rig.pump();
  const std::uint8_t x[1] = {42};
  std::size_t sent = 0;
  for (Timestamp t = 10 * kSec; t <= 1800 * kSec; t += 10 * kSec) {
    rig.run_until(t);
    for (const auto& to : {peer, other}) {
      auto w = rig.client->wrap(to, ByteView(x, 1));
      REQUIRE(w);
      rig.model.handle(*w, rig.clock.now());
      ++sent;
    }
  }
  CHECK(rig.model.relayed_out.size() == sent);
  CHECK(rig.model.dropped_no_channel == 0);
  CHECK(rig.model.dropped_no_permission == 0);
  CHECK(rig.model.refreshes >= 3);            // 600 s lifetime: a refresh every 540 s
  CHECK(rig.model.channel_binds >= 4);        // 1 + every 540 s
  CHECK(rig.model.permission_requests >= 8);  // `other`: 1 + every 240 s
  CHECK(rig.client->state() == Client::State::allocated);
  CHECK(rig.count<turn::AllocationLost>() == 0);
}

TEST_CASE("turn: release sends LIFETIME 0 and ends the allocation", "[turn]") {
  Rig rig;
  rig.allocate();
  REQUIRE(rig.model.allocated(rig.clock.now()));
  rig.client->release(rig.clock.now());
  rig.pump();
  CHECK(!rig.model.allocated(rig.clock.now()));
  CHECK(rig.count<turn::Released>() == 1);
  CHECK(rig.client->state() == Client::State::released);
  CHECK(!rig.client->wrap(addr("203.0.113.2", 1), {}));
}

TEST_CASE("turn: a silent server fails the allocation after RFC 8489's retransmissions", "[turn]") {
  Rig rig;
  rig.model.silent = true;
  rig.allocate();
  rig.run_until(60 * kSec);
  auto* f = rig.last<turn::AllocationFailed>();
  REQUIRE(f);
  CHECK(f->code == 0);
  CHECK(f->reason.find("no answer after 7") != std::string::npos);
  CHECK(rig.wire.size() == 7);
}

TEST_CASE("turn: a refresh the server stops answering loses the allocation", "[turn]") {
  Rig rig;
  rig.allocate();
  rig.model.silent = true;
  rig.run_until(700 * kSec);
  CHECK(rig.count<turn::AllocationLost>() == 1);
  CHECK(rig.client->state() == Client::State::failed);
}

TEST_CASE("turn: forged and unsigned answers are ignored", "[turn]") {
  Rig rig;
  rig.client->start(rig.clock.now());
  auto first = rig.client->take_datagrams();
  REQUIRE(first.size() == 1);
  auto req = stun::decode(first[0]).value();
  // An unsigned success response to our Allocate: someone who saw the request.
  auto forged = stun::make_response(req, stun::MessageClass::SuccessResponse);
  forged.add_xor_address(turn::attr::kXorRelayedAddress, addr("192.0.2.66", 1));
  (void)rig.client->handle_datagram(stun::encode(forged), rig.clock.now());
  // A 401 without NONCE does not count as a challenge either.
  auto bad_challenge = stun::make_response(req, stun::MessageClass::ErrorResponse);
  bad_challenge.add_error_code(401, "Unauthorized");
  (void)rig.client->handle_datagram(stun::encode(bad_challenge), rig.clock.now());
  CHECK(rig.client->state() == Client::State::allocating);
  CHECK(rig.client->stats().bad_messages == 2);
  // The real server's answer still works.
  for (auto& answer : rig.model.handle(first[0], rig.clock.now()))
    (void)rig.client->handle_datagram(answer, rig.clock.now());
  rig.pump();
  REQUIRE(rig.client->state() == Client::State::allocated);
  CHECK(*rig.client->relayed() == rig.model.relayed);
  // Junk from the server's address never throws.
  const std::uint8_t junk[6] = {0x00, 0x01, 0x00, 0x00, 1, 2};
  CHECK(!rig.client->handle_datagram(ByteView(junk, 6), rig.clock.now()));
}

TEST_CASE("turn: the same seed gives the same datagrams", "[turn]") {
  auto run = [] {
    Rig rig;
    rig.allocate();
    rig.client->bind_channel(addr("203.0.113.2", 5000), rig.clock.now());
    rig.run_until(1200 * kSec);
    return rig.wire;
  };
  auto a = run(), b = run();
  CHECK(a.size() > 6);
  CHECK(a == b);
}
