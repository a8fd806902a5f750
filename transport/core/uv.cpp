#include "transport/core/uv.hpp"

#include <netdb.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace quiclab::uv {

std::string error_text(int status) { return std::string(uv_err_name(status)) + " (" + uv_strerror(status) + ")"; }

// ---- Loop ---------------------------------------------------------------

Loop::Loop() { uv_loop_init(&loop_); }

Loop::~Loop() {
  if (closed_) return;
  // Close whatever is left so the loop can be released; owners that outlive the
  // loop are a bug, but must not turn into a leak report on top of it.
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);
}

std::vector<std::string> Loop::live_handles() {
  std::vector<std::string> out;
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void* arg) {
        if (uv_is_closing(h)) return;
        static_cast<std::vector<std::string>*>(arg)->emplace_back(uv_handle_type_name(h->type));
      },
      &out);
  return out;
}

std::vector<std::string> Loop::close() {
  if (closed_) return {};
  // Let pending close callbacks run; a non-empty walk afterwards means a leak.
  uv_run(&loop_, UV_RUN_NOWAIT);
  auto live = live_handles();
  if (!live.empty()) return live;
  while (uv_loop_close(&loop_) == UV_EBUSY) uv_run(&loop_, UV_RUN_NOWAIT);
  closed_ = true;
  return {};
}

// ---- Resolver -----------------------------------------------------------

Resolver::Resolver(Loop& loop) : loop_(loop) {}
Resolver::~Resolver() { cancel(); }

void Resolver::cancel() {
  if (!s_) return;
  // The request may already be running on the thread pool; uv_cancel then
  // fails and the callback still comes. Either way it finds no owner and only
  // frees the state.
  s_->owner = nullptr;
  s_->cb = nullptr;
  uv_cancel(reinterpret_cast<uv_req_t*>(&s_->req));
  s_ = nullptr;
}

Status Resolver::resolve(const std::string& host, std::uint16_t port, int socktype, Callback cb) {
  if (s_) return make_error(ErrorDomain::uv, UV_EBUSY, "a resolution of " + s_->host + " is already pending");
  auto* s = new State;
  s->cb = std::move(cb);
  s->owner = this;
  s->host = host;
  s->port = port;
  s->req.data = s;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  int rc = uv_getaddrinfo(
      loop_.get(), &s->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* st = static_cast<State*>(req->data);
        Callback done;
        if (st->owner) {
          st->owner->s_ = nullptr;
          done = std::move(st->cb);
        }
        Result<std::vector<SocketAddress>> out = make_error(ErrorDomain::uv, status, "");
        if (done) {
          if (status != 0) {
            out = make_error(ErrorDomain::uv, status, "cannot resolve '" + st->host + "': " + error_text(status));
          } else {
            std::vector<SocketAddress> addrs;
            for (auto* ai = res; ai != nullptr; ai = ai->ai_next) {
              SocketAddress a(ai->ai_addr);
              if (a.empty()) continue;
              a.set_port(st->port);
              // getaddrinfo lists an address once per protocol when socktype
              // does not pin one; keep the first of each.
              if (std::find(addrs.begin(), addrs.end(), a) == addrs.end()) addrs.push_back(a);
            }
            if (addrs.empty()) {
              out = make_error(ErrorDomain::uv, UV_EAI_NODATA,
                               "cannot resolve '" + st->host + "': no IPv4 or IPv6 address");
            } else {
              out = std::move(addrs);
            }
          }
        }
        if (res) uv_freeaddrinfo(res);
        delete st;
        if (done) done(std::move(out));
      },
      host.c_str(), nullptr, &hints);
  if (rc != 0) {
    delete s;
    return make_error(ErrorDomain::uv, rc, "cannot resolve '" + host + "': " + error_text(rc));
  }
  s_ = s;
  return {};
}

// ---- Timer --------------------------------------------------------------

Timer::Timer(Loop& loop) : s_(new State) {
  uv_timer_init(loop.get(), &s_->handle);
  s_->handle.data = s_;
}
Timer::~Timer() { close(); }
Timer::Timer(Timer&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
Timer& Timer::operator=(Timer&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}
void Timer::start(std::uint64_t timeout_ms, std::uint64_t repeat_ms, Callback cb) {
  if (!s_) return;
  s_->cb = std::move(cb);
  uv_timer_start(
      &s_->handle,
      [](uv_timer_t* t) {
        auto* s = static_cast<State*>(t->data);
        // Copy: the callback may destroy the Timer (and thus clear s->cb).
        auto fn = s->cb;
        if (fn) fn();
      },
      timeout_ms, repeat_ms);
}
void Timer::stop() {
  if (s_) uv_timer_stop(&s_->handle);
}
bool Timer::active() const { return s_ && uv_is_active(reinterpret_cast<const uv_handle_t*>(&s_->handle)); }
void Timer::unref() {
  if (s_) uv_unref(reinterpret_cast<uv_handle_t*>(&s_->handle));
}
void Timer::close() {
  if (!s_) return;
  s_->cb = nullptr;
  detail::close_and_delete(s_);
  s_ = nullptr;
}

// ---- Signal -------------------------------------------------------------

Signal::Signal(Loop& loop) : s_(new State) {
  uv_signal_init(loop.get(), &s_->handle);
  s_->handle.data = s_;
}
Signal::~Signal() { close(); }
Signal::Signal(Signal&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
Signal& Signal::operator=(Signal&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}
Status Signal::start(int signum, Callback cb) {
  if (!s_) return make_error(ErrorDomain::uv, UV_EINVAL, "signal handle closed");
  s_->cb = std::move(cb);
  int rc = uv_signal_start(
      &s_->handle,
      [](uv_signal_t* h, int sig) {
        auto* s = static_cast<State*>(h->data);
        auto fn = s->cb;
        if (fn) fn(sig);
      },
      signum);
  if (rc != 0) return to_error(rc, "uv_signal_start");
  return {};
}
void Signal::stop() {
  if (s_) uv_signal_stop(&s_->handle);
}
void Signal::unref() {
  if (s_) uv_unref(reinterpret_cast<uv_handle_t*>(&s_->handle));
}
void Signal::close() {
  if (!s_) return;
  s_->cb = nullptr;
  detail::close_and_delete(s_);
  s_ = nullptr;
}

// ---- Poll ---------------------------------------------------------------

Poll::Poll(Loop& loop, int fd) : s_(new State), fd_(fd) {
  uv_poll_init(loop.get(), &s_->handle, fd);
  s_->handle.data = s_;
}
Poll::~Poll() { close(); }
Poll::Poll(Poll&& o) noexcept : s_(std::exchange(o.s_, nullptr)), fd_(std::exchange(o.fd_, -1)) {}
Poll& Poll::operator=(Poll&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::exchange(o.s_, nullptr);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}
Status Poll::start(int events, Callback cb) {
  if (!s_) return make_error(ErrorDomain::uv, UV_EINVAL, "poll handle closed");
  s_->cb = std::move(cb);
  int rc = uv_poll_start(&s_->handle, events, [](uv_poll_t* h, int status, int ev) {
    auto* s = static_cast<State*>(h->data);
    auto fn = s->cb;
    if (fn) fn(status, ev);
  });
  if (rc != 0) return to_error(rc, "uv_poll_start");
  return {};
}
void Poll::stop() {
  if (s_) uv_poll_stop(&s_->handle);
}
void Poll::close() {
  if (!s_) return;
  s_->cb = nullptr;
  detail::close_and_delete(s_);
  s_ = nullptr;
}

// ---- TcpStream ----------------------------------------------------------

TcpStream::TcpStream(Loop& loop) : s_(new State) {
  uv_tcp_init(loop.get(), &s_->handle);
  s_->handle.data = s_;
}
TcpStream::~TcpStream() { close(); }
TcpStream::TcpStream(TcpStream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
TcpStream& TcpStream::operator=(TcpStream&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}

uv_tcp_t* TcpStream::raw() { return s_ ? &s_->handle : nullptr; }

Status TcpStream::connect(const SocketAddress& to, ConnectCallback cb) {
  if (!s_) return make_error(ErrorDomain::uv, UV_EINVAL, "stream closed");
  s_->on_connect = std::move(cb);
  auto* req = new uv_connect_t;
  req->data = s_;
  int rc = uv_tcp_connect(req, &s_->handle, to.sa(), [](uv_connect_t* r, int status) {
    auto* s = static_cast<State*>(r->data);
    delete r;
    auto fn = std::move(s->on_connect);
    s->on_connect = nullptr;
    if (status == UV_ECANCELED || !fn) return;
    if (status != 0) {
      fn(to_error(status, "connect"));
    } else {
      fn(Status{});
    }
  });
  if (rc != 0) {
    delete req;
    return to_error(rc, "connect to " + to.to_string());
  }
  return {};
}

Status TcpStream::read_start(ReadCallback on_data, EndCallback on_end) {
  if (!s_) return make_error(ErrorDomain::uv, UV_EINVAL, "stream closed");
  s_->on_data = std::move(on_data);
  s_->on_end = std::move(on_end);
  int rc = uv_read_start(
      reinterpret_cast<uv_stream_t*>(&s_->handle),
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        // libuv calls alloc and then read synchronously, and the ReadCallback's
        // view is only valid during the call, so one buffer per thread serves
        // every stream: an idle connection holds no read memory.
        static thread_local std::vector<char> shared(64 * 1024);
        *buf = uv_buf_init(shared.data(), static_cast<unsigned>(shared.size()));
      },
      [](uv_stream_t* h, ssize_t nread, const uv_buf_t* buf) {
        auto* s = static_cast<State*>(h->data);
        if (nread > 0) {
          auto fn = s->on_data;
          if (fn) fn(ByteView(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread)));
        } else if (nread < 0) {
          uv_read_stop(h);
          auto fn = s->on_end;
          if (fn) fn(static_cast<int>(nread));
        }
      });
  if (rc != 0) return to_error(rc, "read_start");
  return {};
}

void TcpStream::read_stop() {
  if (s_) uv_read_stop(reinterpret_cast<uv_stream_t*>(&s_->handle));
}

namespace {
struct WriteReq {
  uv_write_t req{};
  Bytes data;
  TcpStream::WriteCallback cb;
};
}  // namespace

Status TcpStream::write(Bytes data, WriteCallback cb) {
  if (!s_) return make_error(ErrorDomain::uv, UV_EINVAL, "stream closed");
  if (data.empty()) {
    if (cb) cb(Status{});
    return {};
  }
  std::size_t sent = 0;  // bytes the kernel already took
  if (!cb) {
    // Most writes fit in the socket buffer at once: write them now and hand the
    // buffer straight back to the pool, warm, for the next batch. (uv_try_write
    // refuses while earlier writes are queued, so the order is kept.)
    uv_buf_t now = uv_buf_init(reinterpret_cast<char*>(data.data()), static_cast<unsigned>(data.size()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&s_->handle), &now, 1);
    if (n > 0 && static_cast<std::size_t>(n) == data.size()) {
      buffer_pool::give(std::move(data));
      return {};
    }
    if (n > 0)
      sent = static_cast<std::size_t>(n);
    else if (n != UV_EAGAIN && n != UV_ENOSYS)
      return to_error(n, "write");
  }
  auto* w = new WriteReq;
  w->data = std::move(data);
  w->cb = std::move(cb);
  w->req.data = w;
  uv_buf_t buf =
      uv_buf_init(reinterpret_cast<char*>(w->data.data() + sent), static_cast<unsigned>(w->data.size() - sent));
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&s_->handle), &buf, 1, [](uv_write_t* r, int status) {
    auto* req = static_cast<WriteReq*>(r->data);
    auto* s = static_cast<State*>(r->handle->data);
    auto fn = std::move(req->cb);
    buffer_pool::give(std::move(req->data));
    delete req;
    if (fn) fn(status == 0 ? Status{} : Status(to_error(status, "write")));
    if (status == 0 && s && s->on_drain && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&s->handle))) {
      auto drain = s->on_drain;
      drain();
    }
  });
  if (rc != 0) {
    delete w;
    return to_error(rc, "write");
  }
  return {};
}

std::size_t TcpStream::write_queue_size() const { return s_ ? s_->handle.write_queue_size : 0; }

void TcpStream::on_drain(std::function<void()> cb) {
  if (s_) s_->on_drain = std::move(cb);
}

void TcpStream::shutdown(std::function<void()> cb) {
  if (!s_) return;
  struct ShutdownReq {
    uv_shutdown_t req{};
    std::function<void()> cb;
  };
  auto* r = new ShutdownReq;
  r->cb = std::move(cb);
  r->req.data = r;
  int rc = uv_shutdown(&r->req, reinterpret_cast<uv_stream_t*>(&s_->handle), [](uv_shutdown_t* req, int status) {
    auto* sr = static_cast<ShutdownReq*>(req->data);
    auto fn = std::move(sr->cb);
    delete sr;
    if (fn && status != UV_ECANCELED) fn();
  });
  if (rc != 0) {
    delete r;
  }
}

void TcpStream::set_nodelay(bool on) {
  if (s_) uv_tcp_nodelay(&s_->handle, on ? 1 : 0);
}

SocketAddress TcpStream::local_address() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (!s_ || uv_tcp_getsockname(&s_->handle, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return SocketAddress(reinterpret_cast<sockaddr*>(&ss));
}

SocketAddress TcpStream::peer_address() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (!s_ || uv_tcp_getpeername(&s_->handle, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return SocketAddress(reinterpret_cast<sockaddr*>(&ss));
}

void TcpStream::close() {
  if (!s_) return;
  s_->on_connect = nullptr;
  s_->on_data = nullptr;
  s_->on_end = nullptr;
  s_->on_drain = nullptr;
  detail::close_and_delete(s_);
  s_ = nullptr;
}

// ---- TcpServer ----------------------------------------------------------

TcpServer::TcpServer(Loop& loop) : s_(new State), loop_(&loop) {
  uv_tcp_init(loop.get(), &s_->handle);
  s_->handle.data = s_;
  s_->owner = &loop;
}
TcpServer::~TcpServer() { close(); }
TcpServer::TcpServer(TcpServer&& o) noexcept : s_(std::exchange(o.s_, nullptr)), loop_(o.loop_) {}
TcpServer& TcpServer::operator=(TcpServer&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::exchange(o.s_, nullptr);
    loop_ = o.loop_;
  }
  return *this;
}

Status TcpServer::listen(const SocketAddress& addr, int backlog, AcceptCallback cb) {
  if (!s_) return make_error(ErrorDomain::uv, UV_EINVAL, "server closed");
  s_->cb = std::move(cb);
  int rc = uv_tcp_bind(&s_->handle, addr.sa(), addr.is_v6() ? UV_TCP_IPV6ONLY : 0);
  if (rc != 0) return to_error(rc, "bind " + addr.to_string());
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(&s_->handle), backlog, [](uv_stream_t* server, int status) {
    auto* s = static_cast<State*>(server->data);
    if (status < 0) return;
    TcpStream client(*s->owner);
    if (uv_accept(server, reinterpret_cast<uv_stream_t*>(client.raw())) != 0) return;
    auto fn = s->cb;
    if (fn) fn(std::move(client));
  });
  if (rc != 0) return to_error(rc, "listen on " + addr.to_string());
  return {};
}

SocketAddress TcpServer::local_address() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (!s_ || uv_tcp_getsockname(&s_->handle, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return SocketAddress(reinterpret_cast<sockaddr*>(&ss));
}

int TcpServer::fd() const {
  uv_os_fd_t fd = -1;
  if (s_) uv_fileno(reinterpret_cast<const uv_handle_t*>(&s_->handle), &fd);
  return fd;
}

void TcpServer::close() {
  if (!s_) return;
  s_->cb = nullptr;
  detail::close_and_delete(s_);
  s_ = nullptr;
}

}  // namespace quiclab::uv
