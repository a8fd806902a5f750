// Test support for the HTTP/2 server tests: running the real `quiclab serve`
// and peer binaries, and a raw HTTP/2-over-TLS client (OpenSSL on a blocking
// socket) that writes hand-made frames and reads the server's frames back.
#pragma once

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "transport/core/buffer.hpp"

namespace quiclab::test {

namespace fs = std::filesystem;

/// A unique directory under the system temp dir, removed with its content.
struct TempDir {
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  fs::path path;
};

/// Writes n bytes of the /bytes/N pattern (http::generated_byte) to file.
void write_generated_file(const fs::path& file, std::uint64_t n);
/// True when the file holds exactly the first `size` bytes of the generated pattern.
bool file_matches_generated(const fs::path& file, std::uint64_t size);
std::string read_text(const fs::path& file);

/// Result of running a program to completion.
struct RunResult {
  int exit_code = -1;  ///< -1: killed on timeout or failed to start
  std::string out;     ///< stdout
  std::string err;     ///< stderr
};
/// Runs argv (no shell), capturing stdout and stderr; kills it after timeout_s.
RunResult run(const std::vector<std::string>& argv, int timeout_s = 120, const std::string& stdin_text = {});

/// `quiclab serve` on 127.0.0.1:0 with a certificate in a temp dir; the port is
/// parsed from its "listening h2 tcp ADDR" line; stderr goes to a file so tests
/// can look for log lines. Stopped (SIGKILL) on destruction if still running.
class Server {
 public:
  explicit Server(std::vector<std::string> extra_args = {}, std::optional<fs::path> root = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  bool ok() const { return port_ != 0; }
  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string url(const std::string& path) const;
  const fs::path& cert() const { return cert_; }
  /// Everything the server logged so far.
  std::string log() const;
  /// Waits (up to timeout_s) until the log contains every one of the needles.
  bool wait_for_log(const std::vector<std::string>& needles, int timeout_s = 20) const;
  /// Sends sig; then waits for the exit. Returns the exit status (-1 on timeout or signal death).
  int signal_and_wait(int sig, int timeout_s = 60);
  /// Resident set size in KiB (VmRSS), 0 if unknown.
  long rss_kib() const;

 private:
  TempDir dir_;
  fs::path cert_, key_, log_file_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  bool exited_ = false;
};

struct Frame {
  std::uint32_t length = 0;
  std::uint8_t type = 0;
  std::uint8_t flags = 0;
  std::uint32_t stream = 0;
  Bytes payload;

  std::uint32_t u32(std::size_t at) const;
  /// GOAWAY: error code; RST_STREAM: error code.
  std::uint32_t error_code() const { return type == NGHTTP2_GOAWAY ? u32(4) : u32(0); }
  std::uint32_t last_stream_id() const { return u32(0) & 0x7fffffffu; }
};

/// A raw HTTP/2 client over TLS on a blocking socket. Tests build frames byte by
/// byte; HPACK is done with nghttp2's deflater/inflater (so broken HPACK is also
/// easy: just send other bytes).
class RawClient {
 public:
  /// TCP connect to 127.0.0.1:port; with tls, a TLS 1.3 handshake offering ALPN h2.
  /// Returns null (and a reason in *why) on failure.
  static std::unique_ptr<RawClient> connect(std::uint16_t port, bool tls = true, std::string* why = nullptr);
  ~RawClient();

  /// "127.0.0.1:PORT" of our side, as the server logs it.
  std::string local_address() const;
  /// Raw bytes (through TLS when established).
  bool send(ByteView data);
  bool send_frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, ByteView payload);
  /// Client preface: magic + SETTINGS with the given (id, value) pairs.
  bool send_preface(const std::vector<std::pair<std::uint16_t, std::uint32_t>>& settings = {});
  /// HEADERS (END_HEADERS, plus END_STREAM when end_stream) for a request.
  bool send_request(std::uint32_t stream, const std::string& method, const std::string& path, bool end_stream = true,
                    const std::vector<std::pair<std::string, std::string>>& extra = {});
  bool send_window_update(std::uint32_t stream, std::uint32_t increment);
  /// HEADERS (END_HEADERS, plus END_STREAM when end_stream) with exactly these fields (e.g. trailers).
  bool send_headers(std::uint32_t stream, std::vector<std::pair<std::string, std::string>> fields,
                    bool end_stream = true);
  /// Sends TLS close_notify and half-closes TCP (the peer sees a clean close).
  bool close_notify();

  /// Next frame, or nullopt when the connection closed or timeout_ms passed (see closed()).
  /// SETTINGS (non-ACK) are acknowledged and PINGs answered automatically when auto_ack.
  std::optional<Frame> read_frame(int timeout_ms = 20000);
  /// Reads frames until pred returns true (that frame is returned), the peer closes, or timeout.
  std::optional<Frame> read_until(const std::function<bool(const Frame&)>& pred, int timeout_ms = 20000);
  /// Reads until the peer closes the connection; true if it did within timeout.
  bool wait_closed(int timeout_ms = 20000);
  bool closed() const { return closed_; }
  /// Every frame read so far.
  const std::vector<Frame>& frames() const { return frames_; }
  /// Decodes a HEADERS frame's header block (no CONTINUATION support needed here).
  std::vector<std::pair<std::string, std::string>> decode_headers(const Frame& f);
  bool auto_ack = true;

 private:
  RawClient() = default;
  bool read_exact(std::uint8_t* dst, std::size_t n, int timeout_ms);
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  bool closed_ = false;
  nghttp2_hd_deflater* deflater_ = nullptr;
  nghttp2_hd_inflater* inflater_ = nullptr;
  std::vector<Frame> frames_;
};

/// Human-readable frame summary for failure messages.
std::string describe(const Frame& f);

}  // namespace quiclab::test
