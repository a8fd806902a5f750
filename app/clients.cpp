#include "app/clients.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "transport/h2/client.hpp"
#include "transport/h3/client.hpp"
#include "transport/http/happy_eyeballs.hpp"

namespace quiclab::app {

namespace {

// One attempt of the race: a ProtocolClient (h2::Client, h3::Client) for one
// of the name's addresses, its clock started with the race.
template <class ProtocolClient>
http::RacingClient::AttemptFactory attempt_factory(uv::Loop& loop, const http::Url& origin,
                                                   const http::ClientOptions& options) {
  return [&loop, origin, options](const SocketAddress& remote,
                                  std::optional<Timestamp> clock_start) -> std::unique_ptr<http::Client> {
    auto o = options;
    o.remote = remote;
    o.clock_start = clock_start;
    return std::make_unique<ProtocolClient>(loop, origin, std::move(o));
  };
}

}  // namespace

Result<std::unique_ptr<http::Client>> make_client(http::Protocol protocol, uv::Loop& loop, const http::Url& origin,
                                                  const http::ClientOptions& options) {
  // Every client goes through Happy Eyeballs: a name is resolved on the loop
  // and its addresses raced (one attempt only for a numeric host).
  http::RacingClient::AttemptFactory factory;
  int socktype = SOCK_STREAM;
  switch (protocol) {
    case http::Protocol::h2:
      factory = attempt_factory<h2::Client>(loop, origin, options);
      break;
    case http::Protocol::h3:
      socktype = SOCK_DGRAM;
      factory = attempt_factory<h3::Client>(loop, origin, options);
      break;
    default:
      return make_error(ErrorDomain::config, EINVAL, "unknown protocol");
  }
  return std::unique_ptr<http::Client>(
      std::make_unique<http::RacingClient>(loop, origin, socktype, options.attempt_delay_ms, std::move(factory)));
}

std::string origin_key(const http::Url& url) {
  return url.scheme + "://" + (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host) + ":" +
         std::to_string(url.port);
}

}  // namespace quiclab::app
