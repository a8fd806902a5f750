// Test support for the HTTP/3 server: an in-process h3::Server on its own loop
// thread (so tests can read its counters afterwards), temp dirs, and a runner
// for peer binaries (gtlsclient) with a timeout that kills them on expiry.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "transport/h3/server.hpp"
#include "transport/http/app.hpp"
#include "transport/quic/server_core.hpp"

namespace quiclab::test {

/// A unique directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct ProcessResult {
  int exit_code = -1;      ///< Exit status, or 128+signal.
  bool timed_out = false;  ///< Killed (SIGKILL) after the timeout.
  std::string log;         ///< Tail of the combined stdout/stderr, for failure messages.
};

/// Runs argv[0] with argv, stdout+stderr to log_file; kills it after timeout_s.
ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s,
                          const std::filesystem::path& log_file);

/// Starts a child without waiting; returns its pid (or -1). Use wait_process.
int spawn_process(const std::vector<std::string>& argv, const std::filesystem::path& log_file);
ProcessResult wait_process(int pid, double timeout_s, const std::filesystem::path& log_file);

/// The HTTP/3 server on a loop thread, bound to ip:0.
class H3ServerHarness {
 public:
  explicit H3ServerHarness(h3::ServerConfig config = {}, std::string ip = "127.0.0.1", http::AppConfig app_config = {});
  ~H3ServerHarness();
  H3ServerHarness(const H3ServerHarness&) = delete;
  H3ServerHarness& operator=(const H3ServerHarness&) = delete;

  bool ok() const { return port_ != 0; }
  const std::string& error() const { return error_; }
  std::uint16_t port() const { return port_; }
  const std::string& ip() const { return ip_; }
  /// "https://IP:PORT/path" (brackets for IPv6).
  std::string url(const std::string& path) const;
  const std::filesystem::path& cert_file() const { return cert_; }

  /// Graceful shutdown; joins the loop thread. Counters below are valid afterwards.
  void stop();
  const quic::ServerCoreStats& stats() const { return stats_; }
  const quic::UdpSocketStats& udp_stats() const { return udp_stats_; }
  const http::Metrics::Counters& h3_counters() const { return metrics_.of(http::Protocol::h3); }
  /// Handles left open on the loop after shutdown (should be empty).
  const std::vector<std::string>& leaked_handles() const { return leaked_; }
  /// Server connection count sampled from another thread (approximate, for load tests).
  std::size_t connections_now() const { return connections_now_.load(); }

 private:
  void run(h3::ServerConfig config);

  std::unique_ptr<TempDir> dir_;
  std::filesystem::path cert_, key_;
  std::string ip_;
  std::string error_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  void* async_ = nullptr;  // uv_async_t*, owned by the loop thread
  std::atomic<bool> ready_{false};
  std::atomic<std::size_t> connections_now_{0};
  bool stopped_ = false;
  http::Metrics metrics_;
  quic::ServerCoreStats stats_;
  quic::UdpSocketStats udp_stats_;
  std::vector<std::string> leaked_;
};

/// gtlsclient arguments: quiet, exit when all streams closed, then options, then HOST PORT URLs.
std::vector<std::string> gtlsclient(const H3ServerHarness& server, const std::vector<std::string>& options,
                                    const std::vector<std::string>& paths);

/// True when file holds exactly `size` bytes of the /bytes/N body.
bool is_generated_body(const std::filesystem::path& file, std::uint64_t size);

/// Resident set size of this process, in KiB.
std::size_t rss_kib();

}  // namespace quiclab::test
