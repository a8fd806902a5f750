// quiclab peer: meet another peer through the rendezvous server (or by
// offers copied over standard input), punch through NATs with ICE-style
// checks on one UDP socket, and speak HTTP/3 over the punched path. The
// work is app/peer_session.*; this is flags, the key file and printing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "app/commands.hpp"
#include "app/peer_session.hpp"
#include "p2p/turn_client.hpp"
#include "transport/core/random.hpp"
#include "transport/core/result.hpp"
#include "transport/core/uv.hpp"

namespace quiclab::cli {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::string rendezvous;
  std::string name;
  std::string key_file;
  std::string connect;
  std::uint32_t wait_s = 0;
  std::vector<std::string> gets;
  std::string root;
  std::string host_candidates = "auto";
  std::string bind;
  std::uint64_t timeout_ms = 10000;
  std::uint64_t keepalive_s = 15;
  bool json = false;
  bool stay = false;
  bool checks_only = false;
  std::string signal;
  std::string turn;
  std::string turn_secret_file;
  std::string turn_user;
  std::string turn_password;
  bool relay_only = false;
  bool direct_only = false;
  bool keep_relay = false;
  std::uint64_t relay_wait_ms = 2000;
  std::uint64_t wait_direct_ms = 0;
  bool birthday = false;
  std::size_t birthday_sockets = 256;
  std::size_t birthday_probes = 1024;
  unsigned birthday_rate = 100;
  std::uint64_t birthday_wait_ms = 1000;
};

// The shared secret of coturn's use-auth-secret: the file's first line
// (trailing white space removed). Never printed: errors name the file only.
Result<std::string> load_turn_secret(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorDomain::config, errno, "--turn-secret-file " + path + ": " + std::strerror(errno));
  std::string line;
  std::getline(in, line);
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  if (line.empty()) return make_error(ErrorDomain::config, EINVAL, "--turn-secret-file " + path + ": empty");
  if (line.size() > 1024)
    return make_error(ErrorDomain::config, EINVAL, "--turn-secret-file " + path + ": longer than 1024 bytes");
  return line;
}

// The registration key: created (32 random bytes, as 64 hex digits, mode
// 0600) when the file is missing; otherwise hex text (32..128 digits) or
// 16..64 raw bytes.
Result<Bytes> load_or_create_key(const std::string& path) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorDomain::config, EINVAL, "--key-file " + path + ": " + why);
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno != ENOENT)
      return make_error(ErrorDomain::config, errno, "--key-file " + path + ": " + std::strerror(errno));
    Bytes key(32);
    Random::system().fill(key.data(), key.size());
    std::string text = to_hex(key) + "\n";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
      return make_error(ErrorDomain::config, errno, "cannot create --key-file " + path + ": " + std::strerror(errno));
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (!ok) return bad("cannot write it");
    return key;
  }
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (content.size() > 4096) return bad("too large for a key (at most 64 bytes, or 128 hex digits)");
  std::string trimmed = content;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.pop_back();
  bool hex = !trimmed.empty() && trimmed.size() % 2 == 0 && std::all_of(trimmed.begin(), trimmed.end(), [](char c) {
    return std::isxdigit(static_cast<unsigned char>(c));
  });
  if (hex && trimmed.size() >= 32 && trimmed.size() <= 128) {
    Bytes key;
    for (std::size_t i = 0; i < trimmed.size(); i += 2)
      key.push_back(static_cast<std::uint8_t>(std::stoi(trimmed.substr(i, 2), nullptr, 16)));
    return key;
  }
  if (content.size() >= 16 && content.size() <= 64) return Bytes(content.begin(), content.end());
  return bad("not a key (want 32..128 hex digits or 16..64 bytes)");
}

int run(const Options& o) {
  auto usage = [](const std::string& msg) {
    std::cerr << "quiclab peer: " << msg << "\n";
    return kExitUsage;
  };
  const bool manual = !o.signal.empty();
  if (manual && o.signal != "stdio") return usage("--signal: only 'stdio' is supported");
  if (!manual && o.rendezvous.empty()) return usage("--rendezvous ADDR:PORT is required (or --signal stdio)");
  if (!manual && o.key_file.empty()) return usage("--key-file FILE is required with --rendezvous");
  if (manual && !o.rendezvous.empty()) return usage("--signal stdio and --rendezvous exclude each other");
  if (o.wait_s > 0 && o.connect.empty()) return usage("--wait-s needs --connect PEER");
  if (!o.gets.empty() && o.connect.empty() && !manual)
    return usage("--get needs --connect PEER (the QUIC client side fetches)");
  if (!o.connect.empty() && o.connect == o.name) return usage("--connect: a peer cannot connect to itself");

  peer::PeerConfig pc;
  pc.name = o.name;
  if (!manual) {
    auto rv = SocketAddress::parse(o.rendezvous, 3478);
    if (!rv) return usage("--rendezvous: " + rv.error().message);
    pc.rendezvous = *rv;
    auto key = load_or_create_key(o.key_file);
    if (!key) return usage(key.error().message);
    pc.key = std::move(*key);
  }
  if (!o.connect.empty()) pc.connect = o.connect;
  pc.wait_s = o.wait_s;
  pc.gets = o.gets;
  if (!o.root.empty()) {
    std::error_code ec;
    if (!fs::is_directory(o.root, ec)) return usage("--root " + o.root + " is not a directory");
    pc.root = fs::path(o.root);
  }
  if (o.host_candidates == "auto") {
    pc.auto_hosts = true;
  } else {
    pc.auto_hosts = false;
    if (o.host_candidates != "none") {
      std::stringstream ss(o.host_candidates);
      std::string item;
      while (std::getline(ss, item, ',')) {
        auto a = SocketAddress::from_ip(item, 0);
        if (!a) return usage("--host-candidates: '" + item + "' is not an IP address (want auto, none or ADDR,...)");
        pc.hosts.push_back(*a);
      }
      if (pc.hosts.empty()) return usage("--host-candidates: empty list (want auto, none or ADDR,...)");
    }
  }
  if (!o.bind.empty()) {
    auto b = SocketAddress::parse(o.bind, 0);
    if (!b) return usage("--bind: " + b.error().message);
    pc.bind = *b;
  }
  if (manual && pc.auto_hosts == false && pc.hosts.empty())
    return usage("--signal stdio needs host candidates (there is no server to learn a reflexive address from)");
  pc.timeout = o.timeout_ms * kNanosPerMilli;
  pc.keepalive = o.keepalive_s * kNanosPerSecond;
  pc.stay = o.stay;
  pc.checks_only = o.checks_only;
  if (o.checks_only && !o.gets.empty()) return usage("--checks-only and --get exclude each other (no QUIC)");
  pc.signal_stdio = manual;
  pc.controlling_stdio = manual && !o.connect.empty();

  // The relay (TURN, RFC 8656, coturn).
  const bool static_user = !o.turn_user.empty() || !o.turn_password.empty();
  if (!o.turn.empty()) {
    if (o.direct_only) return usage("--turn and --direct-only exclude each other");
    if (static_user && !o.turn_secret_file.empty())
      return usage("--turn-secret-file and --turn-user/--turn-password exclude each other");
    if (o.turn_user.empty() != o.turn_password.empty()) return usage("--turn-user and --turn-password go together");
    if (!static_user && o.turn_secret_file.empty())
      return usage("--turn needs --turn-secret-file FILE (coturn use-auth-secret) or --turn-user/--turn-password");
    auto ts = SocketAddress::parse(o.turn, 3478);
    if (!ts) return usage("--turn: " + ts.error().message);
    peer::TurnSettings t;
    t.server = *ts;
    if (static_user) {
      t.username = o.turn_user;
      t.password = o.turn_password;
    } else {
      auto secret = load_turn_secret(o.turn_secret_file);
      if (!secret) return usage(secret.error().message);
      // Valid for a day: long enough for --stay sessions that refresh their
      // allocation with it, short enough to be worth little if it leaks.
      const auto expiry =
          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
              .count() +
          24 * 3600;
      auto c = turn::time_limited_credentials(*secret, o.name, expiry);
      t.username = std::move(c.username);
      t.password = std::move(c.password);
    }
    pc.turn = std::move(t);
  } else if (static_user || !o.turn_secret_file.empty()) {
    return usage("--turn-secret-file, --turn-user and --turn-password need --turn ADDR:PORT");
  }
  if (o.relay_only && o.direct_only) return usage("--relay-only and --direct-only exclude each other");
  if (o.relay_only && !pc.turn) return usage("--relay-only needs --turn ADDR:PORT");
  if (o.keep_relay && !pc.turn) return usage("--keep-relay needs --turn ADDR:PORT");
  if (o.wait_direct_ms > 0 && o.connect.empty())
    return usage("--wait-direct-ms needs --connect PEER (the QUIC client side decides when to close)");
  pc.wait_direct = o.wait_direct_ms * kNanosPerMilli;
  pc.relay_only = o.relay_only;
  pc.direct_only = o.direct_only;
  pc.keep_relay = o.keep_relay;
  pc.relay_wait = o.relay_wait_ms * kNanosPerMilli;

  // Birthday punching: the budget flags mean nothing without it.
  if (!o.birthday &&
      (o.birthday_sockets != 256 || o.birthday_probes != 1024 || o.birthday_rate != 100 || o.birthday_wait_ms != 1000))
    return usage("--birthday-sockets, --birthday-probes, --birthday-rate and --birthday-wait-ms need --birthday");
  if (o.birthday) {
    if (manual)
      return usage(
          "--birthday needs --rendezvous: our NAT's mapping is measured against the rendezvous server's alternate "
          "address");
    if (o.relay_only) return usage("--birthday and --relay-only exclude each other (birthday punching is direct)");
    peer::BirthdaySettings b;
    b.sockets = o.birthday_sockets;
    b.probes = o.birthday_probes;
    b.rate = o.birthday_rate;
    b.wait = o.birthday_wait_ms * kNanosPerMilli;
    pc.birthday = b;
  }

  char tmpl[] = "/tmp/quiclab-peer-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    std::cerr << "quiclab peer: cannot create a temporary directory: " << std::strerror(errno) << "\n";
    return kExitTransport;
  }
  pc.work_dir = tmpl;
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{pc.work_dir};

  const bool json = o.json;
  uv::Loop loop;
  peer::PeerSession session(
      loop, std::move(pc),
      [json](const peer::Report& r) {
        if (json)
          std::cout << r.json.dump() << std::endl;
        else
          std::cout << r.text << std::endl;
      },
      [](const std::string& offer) {
        // The offer goes to stdout as its own line even in text mode: the
        // other side reads exactly this line.
        std::cout << offer << std::endl;
      });
  if (auto st = session.start(); !st) {
    std::cerr << "quiclab peer: " << st.error().message << "\n";
    return kExitTransport;
  }
  std::optional<uv::Signal> sigint, sigterm;
  auto on_signal = [&](int) {
    session.interrupt();
    sigint->close();
    sigterm->close();
  };
  sigint.emplace(loop);
  sigterm.emplace(loop);
  (void)sigint->start(SIGINT, on_signal);
  (void)sigterm->start(SIGTERM, on_signal);
  // They must not keep the loop alive once the session is over.
  sigint->unref();
  sigterm->unref();

  // Manual signalling: the other side's offer, one line on standard input.
  std::optional<uv::Poll> input;
  std::string buffer;
  if (manual) {
    struct stat st {};
    if (::fstat(0, &st) == 0 && S_ISREG(st.st_mode)) {
      std::string line;
      std::getline(std::cin, line);
      session.offer_received(line);
    } else {
      input.emplace(loop, 0);
      (void)input->start(UV_READABLE, [&](int status, int) {
        char chunk[4096];
        ssize_t n = status < 0 ? -1 : ::read(0, chunk, sizeof chunk);
        if (n > 0) buffer.append(chunk, static_cast<std::size_t>(n));
        auto nl = buffer.find('\n');
        if (nl != std::string::npos || n <= 0 || buffer.size() > 65536) {
          input->close();
          session.offer_received(buffer.substr(0, nl));
        }
      });
    }
  }
  loop.run();
  if (sigint) sigint->close();
  if (sigterm) sigterm->close();
  if (input) input->close();
  loop.close();
  return session.exit_code();
}

const Registration reg{
    "peer", "Meet a peer through the rendezvous server, punch through NATs, speak HTTP/3 to it",
    [](CLI::App& sub) -> Runner {
      auto o = std::make_shared<Options>();
      sub.footer(
          "One UDP socket carries the rendezvous STUN, the connectivity checks (ICE, RFC 8445, one\n"
          "component) and QUIC. Without --connect the peer registers and waits to be introduced\n"
          "(it is then the controlled side and the HTTP/3 server); with --connect PEER it asks to\n"
          "be introduced (controlling side, HTTP/3 client). Each side pins the other's certificate\n"
          "fingerprint from the introduction.\n"
          "Output: one line per step; with --json one object per line with an \"event\" field:\n"
          "  registered, introduced, check, connected (path \"direct\" | \"relayed\"), quic, fetch (the\n"
          "  quiclab get --json fields), with --turn relay, relay_failed, relay_lost, relay_released,\n"
          "  path_changed (relayed -> direct) and quic_path (QUIC's path validation of the move), and\n"
          "  last result (outcome \"direct\" | \"relayed\" | \"failed\", reason, relay counters).\n"
          "--turn: a TURN allocation (RFC 8656) on coturn before registering; its relayed address is\n"
          "  our lowest-priority candidate. The controlling side nominates a relayed pair only when no\n"
          "  direct pair worked within --relay-wait-ms, keeps checking the direct ones and moves the\n"
          "  QUIC connection to the first that works (no new handshake), then releases the relay.\n"
          "--birthday: before registering, measure our NAT's mapping against the rendezvous server's\n"
          "  alternate address (event nat_mapping) and offer it. Between an endpoint-dependent\n"
          "  (symmetric) and an endpoint-independent side with no direct pair after --birthday-wait-ms,\n"
          "  the first opens --birthday-sockets sockets and sends one check from each, the second\n"
          "  probes random ports of its public IP (events birthday, birthday_ended; result.birthday\n"
          "  counts probes and sockets). With --turn the relay carries QUIC meanwhile.\n"
          "Exit codes: 0 connected and every fetch 2xx/3xx, 1 some fetch 4xx/5xx, 2 usage,\n"
          "3 transport failure after connecting, 4 no path found (or no introduction).\n"
          "--signal stdio: print this side's offer as one JSON line and read the other side's from\n"
          "standard input (no rendezvous server; the side with --connect is controlling).");
      sub.add_option("--rendezvous", o->rendezvous, "the rendezvous server ADDR:PORT");
      sub.add_option("--name", o->name, "our name at the rendezvous server")->required();
      sub.add_option("--key-file", o->key_file, "registration key (created, mode 0600, when missing)");
      sub.add_option("--connect", o->connect, "ask to be introduced to PEER");
      sub.add_option("--wait-s", o->wait_s, "with --connect: let the server hold the introduction this long")
          ->check(CLI::Range(0u, 300u));
      sub.add_option("--get", o->gets, "fetch PATH from the peer over HTTP/3 (repeat for more)")
          ->allow_extra_args(false);
      sub.add_option("--root", o->root, "serve static files: /PATH is ROOT/PATH");
      sub.add_option("--host-candidates", o->host_candidates,
                     "auto (every non-loopback interface address), none, or ADDR,ADDR,...")
          ->capture_default_str();
      sub.add_option("--bind", o->bind, "local ADDR[:PORT] of the socket (default: any, a free port)");
      sub.add_option("--timeout-ms", o->timeout_ms, "verdict of the connectivity checks at the latest after this")
          ->check(CLI::Range(std::uint64_t{100}, std::uint64_t{600000}))
          ->capture_default_str();
      sub.add_option("--keepalive-s", o->keepalive_s,
                     "keep the NAT mapping to the rendezvous server alive this often (0: never)")
          ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{3600}))
          ->capture_default_str();
      sub.add_flag("--json", o->json, "one JSON object per line");
      sub.add_flag("--stay", o->stay, "after a session, wait for the next introduction");
      sub.add_flag("--checks-only", o->checks_only,
                   "stop after the connectivity checks, no QUIC (interop with plain ICE agents)");
      sub.add_option("--signal", o->signal, "manual signalling: 'stdio' (offers on stdout/stdin)");
      sub.add_option("--turn", o->turn, "TURN server ADDR[:PORT] (coturn) for a relay candidate (port 3478 default)");
      sub.add_option("--turn-secret-file", o->turn_secret_file,
                     "coturn use-auth-secret shared secret: time-limited credentials (never logged)");
      sub.add_option("--turn-user", o->turn_user, "static TURN user (coturn long-term user)");
      sub.add_option("--turn-password", o->turn_password, "its password");
      sub.add_flag("--relay-only", o->relay_only, "only relayed pairs (no direct checks)");
      sub.add_flag("--direct-only", o->direct_only, "never relay: no allocation, the peer's relay candidate ignored");
      sub.add_flag("--keep-relay", o->keep_relay, "keep the allocation after the connection moved to a direct path");
      sub.add_option("--relay-wait-ms", o->relay_wait_ms,
                     "controlling: how long direct pairs may take before a relayed one is nominated")
          ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{60000}))
          ->capture_default_str();
      sub.add_option("--wait-direct-ms", o->wait_direct_ms,
                     "after the fetches, over a relay: stay connected up to this long for a direct path to take over")
          ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{600000}))
          ->capture_default_str();
      sub.add_flag("--birthday", o->birthday,
                   "birthday-paradox punching for port-restricted <-> symmetric NATs (both sides need it)");
      sub.add_option("--birthday-sockets", o->birthday_sockets,
                     "behind an endpoint-dependent mapping: extra sockets to open")
          ->check(CLI::Range(std::size_t{1}, std::size_t{1024}))
          ->capture_default_str();
      sub.add_option("--birthday-probes", o->birthday_probes,
                     "behind an endpoint-independent mapping: probes to random ports, at most")
          ->check(CLI::Range(std::size_t{1}, std::size_t{4096}))
          ->capture_default_str();
      sub.add_option("--birthday-rate", o->birthday_rate, "probes per second")
          ->check(CLI::Range(1u, 1000u))
          ->capture_default_str();
      sub.add_option("--birthday-wait-ms", o->birthday_wait_ms,
                     "start punching this long after the first check if no direct pair works by then")
          ->check(CLI::Range(std::uint64_t{0}, std::uint64_t{60000}))
          ->capture_default_str();
      return [o] { return run(*o); };
    }};

}  // namespace
}  // namespace quiclab::cli
