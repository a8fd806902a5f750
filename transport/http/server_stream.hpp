// The request pipeline of one server stream, shared by the HTTP/2 and HTTP/3
// servers. Sans-IO: the transport feeds it the request's fields, body chunks and
// end as its library decodes them, and takes a response back as soon as one is
// decided (an early 431/413/503/400, or the App's answer once the request is
// complete). Everything that is HTTP semantics, not framing, lives here, so the
// two protocols cannot disagree about it:
//   - the header section limit (RFC 9113 6.5.2 accounting: name + value + 32 per
//     field, pseudo-fields included) -> 431;
//   - pseudo-fields present, connection-specific fields and "te" other than
//     "trailers" refused (RFC 9113 8.2.2, RFC 9114 4.2) -> 400;
//   - content-length: digits, equal when repeated, equal to the body -> 400;
//   - bodies above AppConfig::max_request_body -> 413 as soon as the declared or
//     the received length passes it; buffered bodies within a per-connection and
//     a server-wide budget -> 503 beyond it;
//   - HEAD is the GET without its body (content-length kept); 204 and 304 carry
//     neither body nor content-length (RFC 9110 6.4.1, 8.6);
//   - response fields: lower case, no pseudo-fields, no connection-specific
//     fields, our own content-length, server and alt-svc.
// The transports keep framing, flow control and stream resets.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "transport/core/address.hpp"
#include "transport/core/buffer.hpp"
#include "transport/http/message.hpp"

namespace quiclab::http {

class App;

/// Bytes of request bodies held in memory at once, against a limit. One
/// instance per server process (App::body_budget) and one per connection.
/// Single-threaded, like the loop.
class BodyBudget {
 public:
  explicit BodyBudget(std::uint64_t limit) : limit_(limit) {}
  BodyBudget(const BodyBudget&) = delete;
  BodyBudget& operator=(const BodyBudget&) = delete;

  /// Takes n bytes if they fit (true), else takes nothing (false).
  bool try_take(std::uint64_t n);
  void give_back(std::uint64_t n);
  std::uint64_t in_use() const { return in_use_; }
  std::uint64_t limit() const { return limit_; }
  std::uint64_t peak() const { return peak_; }
  /// How often try_take refused.
  std::uint64_t refusals() const { return refusals_; }

 private:
  std::uint64_t limit_;
  std::uint64_t in_use_ = 0;
  std::uint64_t peak_ = 0;
  std::uint64_t refusals_ = 0;
};

/// A connection's budget: its own limit, and the server's shared one behind it.
class ConnectionBudget {
 public:
  ConnectionBudget(BodyBudget& server, std::uint64_t per_connection_limit)
      : server_(server), own_(per_connection_limit) {}
  ~ConnectionBudget() { server_.give_back(own_.in_use()); }
  ConnectionBudget(const ConnectionBudget&) = delete;
  ConnectionBudget& operator=(const ConnectionBudget&) = delete;

  bool try_take(std::uint64_t n);
  void give_back(std::uint64_t n);
  std::uint64_t in_use() const { return own_.in_use(); }

 private:
  BodyBudget& server_;
  BodyBudget own_;
};

/// What both servers configure the same way.
struct StreamPolicy {
  /// Largest request header section (and, separately, trailer section).
  std::uint64_t max_header_list_size = 64 * 1024;
  /// Added to every response when not empty.
  std::string alt_svc;
};

/// A response as the transport sends it.
struct OutgoingResponse {
  int status = 200;
  /// Regular fields, lower case, already filtered; server, content-length and
  /// alt-svc included. The transport only adds ":status".
  Headers fields;
  /// The body to send, or null: no DATA at all (HEAD, 204, 304, empty body).
  std::shared_ptr<BodySource> body;
  std::uint64_t body_size = 0;
};

/// Response fields never passed from a handler to the wire: hop-by-hop fields
/// (RFC 9110 7.6.1) that HTTP/2 and HTTP/3 forbid, and the ones we set ourselves.
bool is_connection_specific(std::string_view lower_case_name);

class ServerStream {
 public:
  /// budget may be null (no budget: only max_request_body applies).
  ServerStream(const App& app, const StreamPolicy& policy, ConnectionBudget* budget, Protocol protocol,
               SocketAddress peer);
  ~ServerStream();
  ServerStream(const ServerStream&) = delete;
  ServerStream& operator=(const ServerStream&) = delete;

  // ---- the request, in the order the transport decodes it ----
  /// One field of the request header section (pseudo-fields too).
  void header(std::string_view name, std::string_view value);
  /// The header section is complete; end_stream: no body follows.
  void headers_done(bool end_stream);
  /// A chunk of request body.
  void data(ByteView chunk);
  /// One field of a trailer section (counted against the limit, not kept).
  void trailer(std::string_view name, std::string_view value);
  /// The request is complete (END_STREAM / FIN).
  void end_stream();

  // ---- what the transport does next ----
  /// A response is decided and not yet taken.
  bool response_ready() const { return ready_.has_value(); }
  /// Moves the decided response out (counted in Metrics); response_ready() is false afterwards.
  OutgoingResponse take_response();
  /// True once a response was decided before the request was complete: the rest
  /// of the body is not needed (the transport may stop the upload).
  bool body_unwanted() const { return unwanted_ && !complete_; }
  /// Request body bytes dropped since body_unwanted().
  std::uint64_t discarded() const { return discarded_; }
  bool request_complete() const { return complete_; }
  bool responded() const { return responded_; }

  const Request& request() const { return request_; }
  /// Why the pipeline answered on its own (for the transport's log line), empty otherwise.
  const std::string& refusal() const { return refusal_; }

 private:
  void refuse(int status, std::string reason, std::string_view log_detail = {});
  void dispatch();
  void finish(Response response);
  void release_budget();

  const App& app_;
  const StreamPolicy& policy_;
  ConnectionBudget* budget_;
  Request request_;
  std::uint64_t section_size_ = 0;
  bool section_too_large_ = false;
  bool bad_field_ = false;
  std::string bad_field_reason_;
  bool headers_done_ = false;
  bool head_ = false;
  std::optional<std::uint64_t> content_length_;
  std::uint64_t received_ = 0;
  std::uint64_t charged_ = 0;  // bytes taken from the budget
  std::uint64_t discarded_ = 0;
  bool complete_ = false;
  bool responded_ = false;
  bool unwanted_ = false;
  std::optional<OutgoingResponse> ready_;
  std::string refusal_;
};

}  // namespace quiclab::http
