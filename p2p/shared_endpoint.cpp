#include "p2p/shared_endpoint.hpp"

namespace quiclab::p2p {

SharedEndpoint::~SharedEndpoint() { stop(); }

void SharedEndpoint::set_handler(Route route, quic::DatagramHandler* handler) {
  handlers_[static_cast<std::size_t>(route)] = handler;
}

Status SharedEndpoint::start() {
  if (auto st = quic::attach(socket_, *this); !st) return st;
  started_ = true;
  return {};
}

void SharedEndpoint::stop() {
  if (!started_) return;
  started_ = false;
  socket_.stop();
  socket_.on_socket_error(nullptr);
}

void SharedEndpoint::handle_datagram(const quic::ReceivedDatagram& d) {
  const Route r = demux_.route(d.peer, d.data);
  ++stats_.routed[static_cast<std::size_t>(r)];
  auto* h = handlers_[static_cast<std::size_t>(r)];
  if (h == nullptr) {
    ++stats_.unhandled;
    return;
  }
  h->handle_datagram(d);
}

template <class F>
void SharedEndpoint::for_each_handler(F&& f) {
  // A copy: a handler may change the table from inside its callback.
  const auto handlers = handlers_;
  for (std::size_t i = 0; i < handlers.size(); ++i) {
    auto* h = handlers[i];
    if (h == nullptr) continue;
    bool seen = false;
    for (std::size_t j = 0; j < i; ++j) seen = seen || handlers[j] == h;
    if (!seen) f(*h);
  }
}

void SharedEndpoint::handle_batch_end() {
  for_each_handler([](quic::DatagramHandler& h) { h.handle_batch_end(); });
}

void SharedEndpoint::handle_socket_error(int err, const SocketAddress& to) {
  for_each_handler([&](quic::DatagramHandler& h) { h.handle_socket_error(err, to); });
}

}  // namespace quiclab::p2p
