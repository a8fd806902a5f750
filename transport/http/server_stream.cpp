#include "transport/http/server_stream.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "transport/http/app.hpp"

namespace quiclab::http {

bool BodyBudget::try_take(std::uint64_t n) {
  if (n > limit_ || in_use_ > limit_ - n) {
    refusals_++;
    return false;
  }
  in_use_ += n;
  peak_ = std::max(peak_, in_use_);
  return true;
}

void BodyBudget::give_back(std::uint64_t n) { in_use_ -= std::min(n, in_use_); }

bool ConnectionBudget::try_take(std::uint64_t n) {
  if (!own_.try_take(n)) return false;
  if (!server_.try_take(n)) {
    own_.give_back(n);
    return false;
  }
  return true;
}

void ConnectionBudget::give_back(std::uint64_t n) {
  n = std::min(n, own_.in_use());
  own_.give_back(n);
  server_.give_back(n);
}

bool is_connection_specific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" || name == "transfer-encoding" ||
         name == "upgrade";
}

namespace {

// RFC 9110 8.6: 1*DIGIT; a repeated field (or a list) must repeat one value.
// nullopt: malformed or conflicting.
std::optional<std::uint64_t> parse_content_length(std::string_view value, std::optional<std::uint64_t> seen) {
  std::size_t start = 0;
  std::optional<std::uint64_t> result = seen;
  while (start <= value.size()) {
    auto end = value.find(',', start);
    if (end == std::string_view::npos) end = value.size();
    auto item = value.substr(start, end - start);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item.empty() || item.size() > 19) return std::nullopt;
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), n);
    if (ec != std::errc() || p != item.data() + item.size()) return std::nullopt;
    if (result && *result != n) return std::nullopt;
    result = n;
    start = end + 1;
  }
  return result;
}

}  // namespace

ServerStream::ServerStream(const App& app, const StreamPolicy& policy, ConnectionBudget* budget, Protocol protocol,
                           SocketAddress peer)
    : app_(app), policy_(policy), budget_(budget) {
  request_.protocol = protocol;
  request_.peer = std::move(peer);
}

ServerStream::~ServerStream() { release_budget(); }

void ServerStream::release_budget() {
  if (budget_ != nullptr && charged_ > 0) budget_->give_back(charged_);
  charged_ = 0;
}

void ServerStream::header(std::string_view name, std::string_view value) {
  // Keep counting past the limit (the transport keeps decoding, so that the
  // compression state stays in sync) but store nothing more.
  section_size_ += name.size() + value.size() + 32;
  if (section_size_ > policy_.max_header_list_size) {
    section_too_large_ = true;
    return;
  }
  if (section_too_large_ || bad_field_) return;
  auto& r = request_;
  if (!name.empty() && name.front() == ':') {
    if (!r.headers.empty()) {
      bad_field_ = true;
      bad_field_reason_ = "pseudo-header field after a regular field";
    } else if (name == ":method") {
      r.method = value;
    } else if (name == ":path") {
      r.path = value;
    } else if (name == ":scheme") {
      r.scheme = value;
    } else if (name == ":authority") {
      r.authority = value;
    } else if (name != ":protocol") {
      bad_field_ = true;
      bad_field_reason_ = fmt::format("unknown pseudo-header field {}", name);
    }
    return;
  }
  if (is_connection_specific(name) || (name == "te" && value != "trailers")) {
    bad_field_ = true;
    bad_field_reason_ = fmt::format("connection-specific header field '{}'", name);
    return;
  }
  if (name == "content-length") {
    auto n = parse_content_length(value, content_length_);
    if (!n) {
      bad_field_ = true;
      bad_field_reason_ = "malformed or conflicting content-length";
      return;
    }
    content_length_ = n;
  }
  r.headers.push_back({std::string(name), std::string(value)});
}

void ServerStream::headers_done(bool end) {
  headers_done_ = true;
  head_ = request_.method == "HEAD";
  auto header_size = section_size_;
  section_size_ = 0;  // trailers are a section of their own
  if (section_too_large_) {
    // The size goes to the log only: it depends on the client's own fields.
    refuse(431, fmt::format("request header list exceeds our limit of {} bytes", policy_.max_header_list_size),
           fmt::format(" (request header list of {} bytes)", header_size));
  } else if (bad_field_) {
    refuse(400, bad_field_reason_);
  } else if (request_.method.empty() || (request_.path.empty() && request_.method != "CONNECT")) {
    refuse(400, "missing :method or :path");
  } else if (content_length_) {
    auto max = app_.config().max_request_body;
    if (*content_length_ > max) {
      refuse(413, fmt::format("content-length {} exceeds max request body {}", *content_length_, max));
    } else if (*content_length_ > 0 && budget_ != nullptr) {
      if (budget_->try_take(*content_length_)) {
        charged_ = *content_length_;
        request_.body.reserve(static_cast<std::size_t>(*content_length_));
      } else {
        refuse(503, fmt::format("request body buffers are full (content-length {})", *content_length_));
      }
    }
  }
  if (end) end_stream();
}

void ServerStream::data(ByteView chunk) {
  app_.metrics().of(request_.protocol).request_body_bytes += chunk.size();
  if (responded_) {
    discarded_ += chunk.size();
    return;
  }
  received_ += chunk.size();
  const auto max = app_.config().max_request_body;
  if (content_length_ && received_ > *content_length_) {
    refuse(400, fmt::format("request body longer than its content-length {}", *content_length_));
  } else if (received_ > max) {
    refuse(413, fmt::format("request body exceeds max request body {}", max));
  } else if (received_ > charged_ && budget_ != nullptr && !budget_->try_take(received_ - charged_)) {
    refuse(503, fmt::format("request body buffers are full ({} bytes received)", received_));
  } else {
    charged_ = std::max(charged_, received_);
    append(request_.body, chunk);
    return;
  }
  discarded_ += chunk.size();
}

void ServerStream::trailer(std::string_view name, std::string_view value) {
  section_size_ += name.size() + value.size() + 32;
  if (section_size_ > policy_.max_header_list_size && !responded_) {
    refuse(431, fmt::format("request trailer section exceeds our limit of {}", policy_.max_header_list_size));
  }
}

void ServerStream::end_stream() {
  if (complete_) return;
  complete_ = true;
  if (responded_) return;
  if (content_length_ && received_ != *content_length_) {
    refuse(400, fmt::format("request body of {} bytes, content-length said {}", received_, *content_length_));
    return;
  }
  dispatch();
}

void ServerStream::refuse(int status, std::string reason, std::string_view log_detail) {
  if (responded_) return;
  unwanted_ = !complete_;
  Bytes().swap(request_.body);
  release_budget();
  finish(Response::text(status, reason + "\n"));
  refusal_ = fmt::format("{}{}; answering {}", reason, log_detail, status);
}

void ServerStream::dispatch() {
  // HEAD is GET without the content (RFC 9110 9.3.2): same status and fields.
  if (head_) request_.method = "GET";
  auto response = app_.handle(request_);
  if (head_) request_.method = "HEAD";
  // The body is the handler's now (copied or dropped); the budget stays taken
  // until the stream ends, which also covers a copy such as /echo's.
  Bytes().swap(request_.body);
  finish(std::move(response));
}

void ServerStream::finish(Response r) {
  responded_ = true;
  OutgoingResponse out;
  out.status = std::clamp(r.status, 100, 999);
  app_.metrics().count_response(request_.protocol, out.status);
  // RFC 9110 6.4.1, 8.6: 1xx, 204 and 304 have no content and no content-length;
  // HEAD keeps the GET's content-length but sends no content.
  const bool no_content = out.status < 200 || out.status == 204 || out.status == 304;
  const std::uint64_t size = r.body ? r.body->size() : 0;
  out.fields.reserve(r.headers.size() + 3);
  out.fields.push_back({"server", app_.config().server_name});
  if (!no_content) out.fields.push_back({"content-length", std::to_string(size)});
  if (!policy_.alt_svc.empty()) out.fields.push_back({"alt-svc", policy_.alt_svc});
  for (auto& h : r.headers) {
    std::transform(h.name.begin(), h.name.end(), h.name.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    if (h.name.empty() || h.name.front() == ':' || is_connection_specific(h.name) || h.name == "te" ||
        h.name == "content-length" || (h.name == "alt-svc" && !policy_.alt_svc.empty())) {
      continue;
    }
    out.fields.push_back(std::move(h));
  }
  if (!no_content && !head_ && size > 0) {
    out.body = std::move(r.body);
    out.body_size = size;
  }
  ready_ = std::move(out);
}

OutgoingResponse ServerStream::take_response() {
  OutgoingResponse out = std::move(*ready_);
  ready_.reset();
  return out;
}

}  // namespace quiclab::http
