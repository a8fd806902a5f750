#include "tests/h2/support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "tests/sanitizer_report.hpp"
#include "transport/http/message.hpp"
#include "transport/tls/tls.hpp"

extern char** environ;

namespace quiclab::test {

namespace {

// A peer that closed on us must show up as a failed write, not kill the test.
const bool kSigpipeIgnored = [] {
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

std::vector<char*> argv_of(const std::vector<std::string>& args) {
  std::vector<char*> v;
  for (const auto& a : args) v.push_back(const_cast<char*>(a.c_str()));
  v.push_back(nullptr);
  return v;
}

}  // namespace

TempDir::TempDir() {
  std::random_device rd;
  path = fs::temp_directory_path() / ("quiclab-h2test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  fs::create_directories(path);
}
TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

void write_generated_file(const fs::path& file, std::uint64_t n) {
  std::ofstream out(file, std::ios::binary);
  Bytes buf(64 * 1024);
  for (std::uint64_t off = 0; off < n;) {
    auto len = std::min<std::uint64_t>(buf.size(), n - off);
    for (std::uint64_t i = 0; i < len; ++i) buf[i] = http::generated_byte(off + i);
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(len));
    off += len;
  }
}

bool file_matches_generated(const fs::path& file, std::uint64_t size) {
  std::error_code ec;
  if (fs::file_size(file, ec) != size || ec) return false;
  std::ifstream in(file, std::ios::binary);
  Bytes buf(1024 * 1024);
  std::uint64_t off = 0;
  while (off < size) {
    in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
    auto n = static_cast<std::size_t>(in.gcount());
    if (n == 0) return false;
    if (!http::check_generated(off, ByteView(buf.data(), n))) return false;
    off += n;
  }
  return true;
}

std::string read_text(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RunResult run(const std::vector<std::string>& args, int timeout_s, const std::string& stdin_text) {
  RunResult r;
  int out[2], err[2], in[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 || pipe2(in, O_CLOEXEC) != 0) return r;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  pid_t pid = -1;
  auto argv = argv_of(args);
  int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(err[1]);
  ::close(in[0]);
  if (!stdin_text.empty()) {
    // Small inputs only: the pipe buffer takes them without blocking.
    (void)!::write(in[1], stdin_text.data(), stdin_text.size());
  }
  ::close(in[1]);
  if (rc != 0) {
    ::close(out[0]);
    ::close(err[0]);
    r.err = std::string("cannot start ") + args[0] + ": " + std::strerror(rc);
    return r;
  }
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  bool killed = false;
  while (open_fds > 0) {
    int left = ms_left(deadline);
    if (left == 0) {
      ::kill(pid, SIGKILL);
      killed = true;
      break;
    }
    if (::poll(fds, 2, left) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = (!killed && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
  return r;
}

// ---- Server -------------------------------------------------------------

Server::Server(std::vector<std::string> extra_args, std::optional<fs::path> root) {
  auto paths = tls::generate_self_signed(dir_.path / "cert");
  if (!paths) return;
  cert_ = paths->cert;
  key_ = paths->key;
  log_file_ = dir_.path / "server.log";
  std::vector<std::string> args = {QUICLAB_BIN,   "--log-level", "debug",        "serve", "--listen",
                                   "127.0.0.1:0", "--cert",      cert_.string(), "--key", key_.string()};
  if (root) {
    args.push_back("--root");
    args.push_back(root->string());
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return;
  int logfd = ::open(log_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, logfd, 2);
  auto argv = argv_of(args);
  int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(logfd);
  if (rc != 0) {
    pid_ = -1;
    ::close(out[0]);
    return;
  }
  // Wait for "listening h2 tcp 127.0.0.1:PORT" (generous: sanitizer builds are slow to start).
  std::string line;
  auto deadline = Clock::now() + std::chrono::seconds(60);
  pollfd pfd{out[0], POLLIN, 0};
  while (line.find('\n') == std::string::npos && ms_left(deadline) > 0) {
    if (::poll(&pfd, 1, ms_left(deadline)) <= 0) continue;
    char c[256];
    auto n = ::read(out[0], c, sizeof c);
    if (n <= 0) break;
    line.append(c, static_cast<std::size_t>(n));
  }
  ::close(out[0]);  // later stdout lines (none expected) go to a closed pipe: they are ignored
  const std::string prefix = "listening h2 tcp ";
  auto at = line.find(prefix);
  if (at == std::string::npos) return;
  auto addr = line.substr(at + prefix.size(), line.find('\n', at) - at - prefix.size());
  port_ = static_cast<std::uint16_t>(std::stoi(addr.substr(addr.rfind(':') + 1)));
}

Server::~Server() {
  if (pid_ > 0 && !exited_) {
    // SIGTERM drains; a second SIGTERM closes at once. SIGKILL only when the
    // server ignores both, which is a failure: and a killed sanitizer build
    // never prints its leak report.
    bool gone = false;
    for (int round = 0; round < 2 && !gone; ++round) {
      ::kill(pid_, SIGTERM);
      auto deadline = Clock::now() + std::chrono::seconds(round == 0 ? 3 : 15);
      int status = 0;
      while (!gone && ms_left(deadline) > 0) {
        gone = ::waitpid(pid_, &status, WNOHANG) == pid_;
        if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    if (!gone) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      FAIL_CHECK("quiclab serve (pid " << pid_ << ") ignored two SIGTERMs and was killed");
    }
  }
  if (pid_ > 0) {
    if (auto report = sanitizer_report(log())) FAIL_CHECK("quiclab serve printed a sanitizer report:\n" << *report);
  }
}

std::string Server::url(const std::string& path) const { return "https://127.0.0.1:" + std::to_string(port_) + path; }

std::string Server::log() const { return read_text(log_file_); }

bool Server::wait_for_log(const std::vector<std::string>& needles, int timeout_s) const {
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  do {
    auto text = log();
    bool all = true;
    for (const auto& n : needles) all = all && text.find(n) != std::string::npos;
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (ms_left(deadline) > 0);
  return false;
}

int Server::signal_and_wait(int sig, int timeout_s) {
  if (pid_ <= 0 || exited_) return -1;
  ::kill(pid_, sig);
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  int status = 0;
  while (ms_left(deadline) > 0) {
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

long Server::rss_kib() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

// ---- Frame / RawClient --------------------------------------------------

std::uint32_t Frame::u32(std::size_t at) const {
  if (payload.size() < at + 4) return 0xffffffffu;
  return (std::uint32_t{payload[at]} << 24) | (std::uint32_t{payload[at + 1]} << 16) |
         (std::uint32_t{payload[at + 2]} << 8) | payload[at + 3];
}

std::string describe(const Frame& f) {
  std::string s = "type=" + std::to_string(f.type) + " flags=" + std::to_string(f.flags) +
                  " stream=" + std::to_string(f.stream) + " length=" + std::to_string(f.length);
  if (f.type == NGHTTP2_GOAWAY) {
    s += " GOAWAY last=" + std::to_string(f.last_stream_id()) + " error=" + std::to_string(f.error_code());
  }
  if (f.type == NGHTTP2_RST_STREAM) s += " RST_STREAM error=" + std::to_string(f.error_code());
  return s;
}

std::unique_ptr<RawClient> RawClient::connect(std::uint16_t port, bool tls, std::string* why) {
  std::unique_ptr<RawClient> c(new RawClient);
  auto fail = [&](std::string text) -> std::unique_ptr<RawClient> {
    if (why) *why = std::move(text);
    return nullptr;
  };
  c->fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(c->fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    return fail(std::string("connect: ") + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(c->fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  nghttp2_hd_deflate_new(&c->deflater_, 4096);
  nghttp2_hd_inflate_new(&c->inflater_);
  if (!tls) return c;
  c->ctx_ = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(c->ctx_, TLS1_3_VERSION);
  static const unsigned char alpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(c->ctx_, alpn, sizeof alpn);
  SSL_CTX_set_verify(c->ctx_, SSL_VERIFY_NONE, nullptr);
  c->ssl_ = SSL_new(c->ctx_);
  SSL_set_fd(c->ssl_, c->fd_);
  SSL_set_tlsext_host_name(c->ssl_, "localhost");
  timeval tv{30, 0};  // the handshake must not hang a test forever
  ::setsockopt(c->fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (SSL_connect(c->ssl_) != 1) return fail("TLS handshake: " + tls::openssl_errors());
  const unsigned char* p = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(c->ssl_, &p, &len);
  if (std::string(reinterpret_cast<const char*>(p), len) != "h2") return fail("ALPN did not select h2");
  return c;
}

RawClient::~RawClient() {
  if (ssl_) SSL_free(ssl_);
  if (ctx_) SSL_CTX_free(ctx_);
  if (fd_ >= 0) ::close(fd_);
  if (deflater_) nghttp2_hd_deflate_del(deflater_);
  if (inflater_) nghttp2_hd_inflate_del(inflater_);
}

bool RawClient::close_notify() {
  if (!ssl_) return false;
  bool sent = SSL_shutdown(ssl_) >= 0;
  return ::shutdown(fd_, SHUT_WR) == 0 && sent;
}

std::string RawClient::local_address() const {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
  return std::string(ip) + ":" + std::to_string(ntohs(sa.sin_port));
}

bool RawClient::send(ByteView data) {
  if (closed_) return false;
  std::size_t done = 0;
  while (done < data.size()) {
    long n = ssl_ ? SSL_write(ssl_, data.data() + done, static_cast<int>(data.size() - done))
                  : ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

bool RawClient::send_frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, ByteView payload) {
  Bytes f;
  auto len = payload.size();
  f.push_back(static_cast<std::uint8_t>(len >> 16));
  f.push_back(static_cast<std::uint8_t>(len >> 8));
  f.push_back(static_cast<std::uint8_t>(len));
  f.push_back(type);
  f.push_back(flags);
  for (int shift = 24; shift >= 0; shift -= 8) f.push_back(static_cast<std::uint8_t>(stream >> shift));
  append(f, payload);
  return send(f);
}

bool RawClient::send_preface(const std::vector<std::pair<std::uint16_t, std::uint32_t>>& settings) {
  if (!send(as_bytes(NGHTTP2_CLIENT_MAGIC))) return false;
  Bytes p;
  for (auto [id, v] : settings) {
    p.push_back(static_cast<std::uint8_t>(id >> 8));
    p.push_back(static_cast<std::uint8_t>(id));
    for (int shift = 24; shift >= 0; shift -= 8) p.push_back(static_cast<std::uint8_t>(v >> shift));
  }
  return send_frame(NGHTTP2_SETTINGS, 0, 0, p);
}

bool RawClient::send_request(std::uint32_t stream, const std::string& method, const std::string& path, bool end_stream,
                             const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::pair<std::string, std::string>> h = {
      {":method", method}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}};
  h.insert(h.end(), extra.begin(), extra.end());
  return send_headers(stream, h, end_stream);
}

bool RawClient::send_headers(std::uint32_t stream, std::vector<std::pair<std::string, std::string>> h,
                             bool end_stream) {
  std::vector<nghttp2_nv> nva;
  for (auto& [n, v] : h) {
    nva.push_back({reinterpret_cast<std::uint8_t*>(n.data()), reinterpret_cast<std::uint8_t*>(v.data()), n.size(),
                   v.size(), NGHTTP2_NV_FLAG_NONE});
  }
  Bytes block(nghttp2_hd_deflate_bound(deflater_, nva.data(), nva.size()));
  auto n = nghttp2_hd_deflate_hd(deflater_, block.data(), block.size(), nva.data(), nva.size());
  if (n < 0) return false;
  block.resize(static_cast<std::size_t>(n));
  std::uint8_t flags = NGHTTP2_FLAG_END_HEADERS | (end_stream ? NGHTTP2_FLAG_END_STREAM : 0);
  return send_frame(NGHTTP2_HEADERS, flags, stream, block);
}

bool RawClient::send_window_update(std::uint32_t stream, std::uint32_t increment) {
  const std::uint8_t p[4] = {static_cast<std::uint8_t>(increment >> 24), static_cast<std::uint8_t>(increment >> 16),
                             static_cast<std::uint8_t>(increment >> 8), static_cast<std::uint8_t>(increment)};
  return send_frame(NGHTTP2_WINDOW_UPDATE, 0, stream, ByteView(p, 4));
}

bool RawClient::read_exact(std::uint8_t* dst, std::size_t n, int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::size_t done = 0;
  while (done < n) {
    if (!ssl_ || SSL_pending(ssl_) == 0) {
      pollfd pfd{fd_, POLLIN, 0};
      int left = ms_left(deadline);
      if (left == 0 || ::poll(&pfd, 1, left) <= 0) return false;  // timeout (not closed)
    }
    long r = ssl_ ? SSL_read(ssl_, dst + done, static_cast<int>(n - done)) : ::recv(fd_, dst + done, n - done, 0);
    if (r <= 0) {
      if (ssl_) {
        int e = SSL_get_error(ssl_, static_cast<int>(r));
        if (e == SSL_ERROR_WANT_READ) continue;
      } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        continue;
      }
      closed_ = true;
      return false;
    }
    done += static_cast<std::size_t>(r);
  }
  return true;
}

std::optional<Frame> RawClient::read_frame(int timeout_ms) {
  if (closed_) return std::nullopt;
  std::uint8_t hd[9];
  if (!read_exact(hd, 9, timeout_ms)) return std::nullopt;
  Frame f;
  f.length = (std::uint32_t{hd[0]} << 16) | (std::uint32_t{hd[1]} << 8) | hd[2];
  f.type = hd[3];
  f.flags = hd[4];
  f.stream =
      ((std::uint32_t{hd[5]} << 24) | (std::uint32_t{hd[6]} << 16) | (std::uint32_t{hd[7]} << 8) | hd[8]) & 0x7fffffffu;
  f.payload.resize(f.length);
  if (f.length > 0 && !read_exact(f.payload.data(), f.length, timeout_ms)) return std::nullopt;
  if (auto_ack) {
    if (f.type == NGHTTP2_SETTINGS && !(f.flags & NGHTTP2_FLAG_ACK))
      send_frame(NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, {});
    if (f.type == NGHTTP2_PING && !(f.flags & NGHTTP2_FLAG_ACK))
      send_frame(NGHTTP2_PING, NGHTTP2_FLAG_ACK, 0, f.payload);
  }
  frames_.push_back(f);
  return f;
}

std::optional<Frame> RawClient::read_until(const std::function<bool(const Frame&)>& pred, int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!closed_) {
    int left = ms_left(deadline);
    if (left == 0) return std::nullopt;
    auto f = read_frame(left);
    if (!f) return std::nullopt;
    if (pred(*f)) return f;
  }
  return std::nullopt;
}

bool RawClient::wait_closed(int timeout_ms) {
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!closed_ && ms_left(deadline) > 0) read_frame(ms_left(deadline));
  return closed_;
}

std::vector<std::pair<std::string, std::string>> RawClient::decode_headers(const Frame& f) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t off = 0, end = f.payload.size();
  if (f.flags & NGHTTP2_FLAG_PADDED) {
    off = 1;
    end -= f.payload[0];
  }
  if (f.flags & NGHTTP2_FLAG_PRIORITY) off += 5;
  const std::uint8_t* in = f.payload.data() + off;
  std::size_t inlen = end - off;
  for (;;) {
    nghttp2_nv nv;
    int flags = 0;
    auto n = nghttp2_hd_inflate_hd2(inflater_, &nv, &flags, in, inlen, 1);
    if (n < 0) break;
    in += n;
    inlen -= static_cast<std::size_t>(n);
    if (flags & NGHTTP2_HD_INFLATE_EMIT) {
      out.emplace_back(std::string(reinterpret_cast<char*>(nv.name), nv.namelen),
                       std::string(reinterpret_cast<char*>(nv.value), nv.valuelen));
    }
    if (flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(inflater_);
      break;
    }
    if (inlen == 0 && !(flags & NGHTTP2_HD_INFLATE_EMIT)) break;
  }
  return out;
}

}  // namespace quiclab::test
