// RAII wrappers over the libuv handles quiclab uses (TCP, UDP, timer, signal, poll).
//
// libuv's rule: a handle's memory may be freed only in (or after) its close
// callback. Each wrapper therefore owns a heap "state" holding the uv handle and
// the user's callbacks; destroying or close()-ing the wrapper clears the callbacks
// (so none runs after the owner is gone) and starts uv_close, whose callback
// deletes the state. The wrapper itself may be destroyed at any time, including
// from inside one of its own callbacks.
//
// Only these adapters (and the UDP fast path in transport/h3) include <uv.h>;
// protocol cores stay sans-IO.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/core/result.hpp"

namespace quiclab::uv {

/// Error text for a libuv status code, e.g. "ECONNREFUSED (connection refused)".
std::string error_text(int status);
inline Error to_error(int status, const std::string& what) {
  return make_error(ErrorDomain::uv, status, what + ": " + error_text(status));
}

class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uv_loop_t* get() { return &loop_; }
  /// Runs until stop() or no active handles remain.
  int run(uv_run_mode mode = UV_RUN_DEFAULT) { return uv_run(&loop_, mode); }
  void stop() { uv_stop(&loop_); }
  /// Monotonic nanoseconds (uv_hrtime).
  static std::uint64_t hrtime() { return uv_hrtime(); }

  /// Runs the loop until every closing handle has finished closing, then closes it.
  /// Returns the descriptions of handles still open (empty on a clean shutdown);
  /// in that case the loop stays open and is closed again by the destructor.
  std::vector<std::string> close();
  /// Descriptions ("tcp", "timer", ...) of all handles not yet closed.
  std::vector<std::string> live_handles();

 private:
  uv_loop_t loop_{};
  bool closed_ = false;
};

namespace detail {
/// Starts uv_close on h unless it is already closing; the close callback deletes
/// the owning state object through h->data (a State*).
template <class State>
void close_and_delete(State* s) {
  if (s == nullptr) return;
  auto* h = reinterpret_cast<uv_handle_t*>(&s->handle);
  if (uv_is_closing(h)) return;
  uv_close(h, [](uv_handle_t* handle) { delete static_cast<State*>(handle->data); });
}
}  // namespace detail

class Timer {
 public:
  using Callback = std::function<void()>;
  explicit Timer(Loop& loop);
  ~Timer();
  Timer(Timer&&) noexcept;
  Timer& operator=(Timer&&) noexcept;

  /// Fires cb after timeout_ms, then every repeat_ms if non-zero.
  void start(std::uint64_t timeout_ms, std::uint64_t repeat_ms, Callback cb);
  void stop();
  bool active() const;
  /// Lets the loop exit while only this timer remains.
  void unref();
  void close();

 private:
  struct State {
    uv_timer_t handle{};
    Callback cb;
  };
  State* s_ = nullptr;
};

class Signal {
 public:
  using Callback = std::function<void(int signum)>;
  explicit Signal(Loop& loop);
  ~Signal();
  Signal(Signal&&) noexcept;
  Signal& operator=(Signal&&) noexcept;
  Status start(int signum, Callback cb);
  void stop();
  void unref();
  void close();

 private:
  struct State {
    uv_signal_t handle{};
    Callback cb;
  };
  State* s_ = nullptr;
};

/// Readiness on a file descriptor we own (used where uv_udp_t cannot reach the
/// socket options we need: GSO, GRO, ECN, recvmmsg; and for timerfd).
class Poll {
 public:
  using Callback = std::function<void(int status, int events)>;
  Poll(Loop& loop, int fd);
  ~Poll();
  Poll(Poll&&) noexcept;
  Poll& operator=(Poll&&) noexcept;
  /// events: UV_READABLE | UV_WRITABLE.
  Status start(int events, Callback cb);
  void stop();
  void close();
  int fd() const { return fd_; }

 private:
  struct State {
    uv_poll_t handle{};
    Callback cb;
  };
  State* s_ = nullptr;
  int fd_ = -1;
};

class TcpStream {
 public:
  using ConnectCallback = std::function<void(Status)>;
  /// data is valid only during the call (the read buffer is shared by all streams).
  using ReadCallback = std::function<void(ByteView data)>;
  /// Called once on EOF (status UV_EOF) or a read error; the stream should then be closed.
  using EndCallback = std::function<void(int status)>;
  using WriteCallback = std::function<void(Status)>;

  explicit TcpStream(Loop& loop);
  ~TcpStream();
  TcpStream(TcpStream&&) noexcept;
  TcpStream& operator=(TcpStream&&) noexcept;

  Status connect(const SocketAddress& to, ConnectCallback cb);
  Status read_start(ReadCallback on_data, EndCallback on_end);
  void read_stop();
  /// Queues bytes for sending; the buffer is owned until written.
  Status write(Bytes data, WriteCallback cb = nullptr);
  /// Bytes queued in libuv and not yet handed to the kernel (for back-pressure).
  std::size_t write_queue_size() const;
  /// Called each time a write completes (to resume producers after back-pressure).
  void on_drain(std::function<void()> cb);
  void shutdown(std::function<void()> cb = nullptr);
  void set_nodelay(bool on);
  SocketAddress local_address() const;
  SocketAddress peer_address() const;
  bool is_open() const { return s_ != nullptr; }
  /// Closes without waiting for queued writes (RST is not forced).
  void close();

  uv_tcp_t* raw();

 private:
  friend class TcpServer;
  struct State {
    uv_tcp_t handle{};
    ConnectCallback on_connect;
    ReadCallback on_data;
    EndCallback on_end;
    std::function<void()> on_drain;
    std::vector<char> read_buf;
  };
  State* s_ = nullptr;
};

class TcpServer {
 public:
  /// Called for each accepted connection; the callee takes ownership of the stream.
  using AcceptCallback = std::function<void(TcpStream stream)>;
  explicit TcpServer(Loop& loop);
  ~TcpServer();
  TcpServer(TcpServer&&) noexcept;
  TcpServer& operator=(TcpServer&&) noexcept;

  Status listen(const SocketAddress& addr, int backlog, AcceptCallback cb);
  SocketAddress local_address() const;
  /// The listening socket (-1 before listen()), for socket options.
  int fd() const;
  void close();

 private:
  struct State {
    uv_tcp_t handle{};
    AcceptCallback cb;
    uv_loop_t* loop = nullptr;
    Loop* owner = nullptr;
  };
  State* s_ = nullptr;
  Loop* loop_;
};

/// Name resolution on libuv's thread pool (uv_getaddrinfo), so the loop never
/// blocks on DNS or /etc/hosts. One resolution at a time per Resolver.
class Resolver {
 public:
  /// The addresses in the resolver's order (RFC 6724 for glibc), each with
  /// the port given to resolve(); or an error that names the host.
  using Callback = std::function<void(Result<std::vector<SocketAddress>>)>;
  explicit Resolver(Loop& loop);
  /// Cancels a pending resolution: its callback never runs.
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  /// Starts resolving `host` for sockets of `socktype` (SOCK_STREAM or
  /// SOCK_DGRAM), any family. The callback runs from the loop, never from
  /// inside resolve(). Errors: a resolution is already pending; libuv refused.
  Status resolve(const std::string& host, std::uint16_t port, int socktype, Callback cb);
  void cancel();
  bool pending() const { return s_ != nullptr; }

 private:
  struct State {
    uv_getaddrinfo_t req{};
    Callback cb;
    Resolver* owner = nullptr;
    std::string host;
    std::uint16_t port = 0;
  };
  Loop& loop_;
  State* s_ = nullptr;
};

}  // namespace quiclab::uv
