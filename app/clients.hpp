// The one place where a protocol choice (--h2 / --h3) becomes a client object,
// so `get` and `bench` stay protocol-agnostic and the HTTP/3 client plugs in here.
#pragma once

#include <memory>

#include "transport/core/result.hpp"
#include "transport/core/uv.hpp"
#include "transport/http/client.hpp"

namespace quiclab::app {

/// A client for one origin (scheme, host and port of `origin`) on `loop`.
/// Errors: the protocol has no client in this build (HTTP/3 until it lands).
/// The client does nothing until connect() is called.
Result<std::unique_ptr<http::Client>> make_client(http::Protocol protocol, uv::Loop& loop, const http::Url& origin,
                                                  const http::ClientOptions& options);

/// "https://host:port" of a URL: requests to the same origin share a connection.
std::string origin_key(const http::Url& url);

}  // namespace quiclab::app
