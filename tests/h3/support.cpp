#include "tests/h3/support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <future>
#include <random>
#include <sstream>

#include "tests/sanitizer_report.hpp"
#include "transport/core/uv.hpp"
#include "transport/tls/tls.hpp"

extern char** environ;

namespace quiclab::test {

namespace fs = std::filesystem;

TempDir::TempDir(const std::string& prefix) {
  std::random_device rd;
  for (;;) {
    auto p = fs::temp_directory_path() / (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::error_code ec;
    if (fs::create_directory(p, ec)) {
      path_ = p;
      return;
    }
  }
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

int spawn_process(const std::vector<std::string>& argv, const fs::path& log_file) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

ProcessResult wait_process(int pid, double timeout_s, const fs::path& log_file) {
  ProcessResult r;
  if (pid < 0) {
    r.log = "spawn failed";
    return r;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(log_file);
  std::stringstream ss;
  ss << in.rdbuf();
  r.log = ss.str();
  if (auto report = sanitizer_report(ss.str()))
    FAIL_CHECK("the process logging to " << log_file.string() << " printed a sanitizer report:\n" << *report);
  if (r.log.size() > 4000) r.log = "..." + r.log.substr(r.log.size() - 4000);
  return r;
}

ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s, const fs::path& log_file) {
  return wait_process(spawn_process(argv, log_file), timeout_s, log_file);
}

H3ServerHarness::H3ServerHarness(h3::ServerConfig config, std::string ip, http::AppConfig app_config)
    : dir_(std::make_unique<TempDir>("quiclab-h3test")), ip_(std::move(ip)) {
  auto certs = tls::generate_self_signed(dir_->path() / "cert");
  if (!certs) {
    error_ = certs.error().message;
    return;
  }
  cert_ = certs->cert;
  key_ = certs->key;
  config.cert_file = cert_;
  config.key_file = key_;
  // Tests stop the server right after their clients: do not wait long for stragglers.
  config.quic.shutdown_timeout = 2 * kNanosPerSecond;
  std::promise<void> started;
  auto fut = started.get_future();
  thread_ = std::thread([this, config, app_config, &started]() mutable {
    uv::Loop loop;
    http::App app(app_config, metrics_);
    auto addr = SocketAddress::from_ip(ip_, 0);
    auto socket =
        addr ? quic::open_udp(loop, *addr, config.udp) : Result<std::unique_ptr<quic::UdpSocket>>(addr.error());
    auto server = socket ? std::make_unique<h3::Server>(loop, app, config, **socket) : nullptr;
    auto st = !socket ? Status(socket.error()) : server->start();
    if (!st) {
      error_ = st.error().message;
      server.reset();
      if (socket) (*socket)->close();
      loop.close();
      started.set_value();
      return;
    }
    port_ = server->local_address().port();
    auto* async = new uv_async_t;
    async->data = server.get();
    uv_async_init(loop.get(), async, [](uv_async_t* a) {
      auto* srv = static_cast<h3::Server*>(a->data);
      srv->shutdown([a] {
        uv_close(reinterpret_cast<uv_handle_t*>(a), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
      });
    });
    async_ = async;
    uv::Timer sampler(loop);
    sampler.start(50, 50, [&] { connections_now_ = server->connection_count(); });
    sampler.unref();
    started.set_value();
    loop.run();
    stats_ = server->quic_stats();
    udp_stats_ = server->udp_stats();
    sampler.close();
    server.reset();
    (*socket)->close();
    leaked_ = loop.close();
  });
  fut.wait();
}

H3ServerHarness::~H3ServerHarness() { stop(); }

void H3ServerHarness::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (async_ != nullptr) uv_async_send(static_cast<uv_async_t*>(async_));
  if (thread_.joinable()) thread_.join();
}

std::string H3ServerHarness::url(const std::string& path) const {
  bool v6 = ip_.find(':') != std::string::npos;
  return "https://" + (v6 ? "[" + ip_ + "]" : ip_) + ":" + std::to_string(port_) + path;
}

std::vector<std::string> gtlsclient(const H3ServerHarness& server, const std::vector<std::string>& options,
                                    const std::vector<std::string>& paths) {
  std::vector<std::string> argv{"gtlsclient", "-q", "--exit-on-all-streams-close", "--no-http-dump"};
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back(server.ip());
  argv.push_back(std::to_string(server.port()));
  for (const auto& p : paths) argv.push_back(server.url(p));
  return argv;
}

bool is_generated_body(const fs::path& file, std::uint64_t size) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return false;
  std::vector<std::uint8_t> buf(1 << 20);
  std::uint64_t offset = 0;
  while (in) {
    in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
    auto n = static_cast<std::size_t>(in.gcount());
    if (n == 0) break;
    if (!http::check_generated(offset, ByteView(buf.data(), n))) return false;
    offset += n;
  }
  return offset == size;
}

std::size_t rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
  }
  return 0;
}

}  // namespace quiclab::test
