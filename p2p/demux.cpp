#include "p2p/demux.hpp"

#include "transport/core/datagram_kind.hpp"

namespace quiclab::p2p {

std::string_view route_name(Route r) {
  switch (r) {
    case Route::rendezvous:
      return "rendezvous";
    case Route::connectivity_check:
      return "connectivity_check";
    case Route::turn:
      return "turn";
    case Route::quic:
      return "quic";
  }
  return "?";
}

Route Demultiplexer::route(const SocketAddress& from, ByteView datagram) const {
  const bool stun = is_stun_message(datagram);
  if (turn_ && from == *turn_ && (stun || is_channel_data(datagram))) return Route::turn;
  if (stun) return rendezvous_ && from == *rendezvous_ ? Route::rendezvous : Route::connectivity_check;
  return Route::quic;
}

}  // namespace quiclab::p2p
