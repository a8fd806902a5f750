// quiclab get: fetch URLs over HTTP/2 (or HTTP/3), many streams on one
// connection per origin, with the per-request timing breakdown.
#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "app/clients.hpp"
#include "app/commands.hpp"
#include "app/fetch_json.hpp"
#include "transport/core/uv.hpp"
#include "transport/h3/alt_svc.hpp"
#include "transport/http/app.hpp"
#include "transport/http/client.hpp"

namespace quiclab::cli {
namespace {

struct GetOptions {
  bool h2 = false;
  bool h3 = false;
  bool insecure = false;
  std::string cacert;
  unsigned repeat = 1;
  unsigned streams = 100;
  bool json = false;
  std::string output;
  bool verify_bytes = false;
  std::string method;
  std::string data;
  std::string data_file;
  std::vector<std::string> headers;
  std::uint64_t timeout_ms = 30000;
  std::uint64_t attempt_delay_ms = 250;
  std::vector<std::string> urls;
  // HTTP/3 only.
  std::string session_file;
  std::string qlog_dir;
  std::size_t ack_thresh = 0;
  std::string tls_cipher, tls_group;
  quic::UdpPayloadPolicy udp_payload;  // --max-udp-payload
  bool alt_svc = false;                // HTTP/2 first, then HTTP/3 when the server offers it
};

/// One request as the command sees it: what was asked and what came back.
struct Fetch {
  http::Url url;
  std::string url_text;
  http::ClientResponse response;
  bool done = false;
  std::int64_t done_unix_us = 0;                // the wall clock when the response completed
  std::optional<std::uint64_t> expected_bytes;  // --verify-bytes on /bytes/N
  std::uint64_t offset = 0;
  bool mismatch = false;
  std::optional<std::string> verify_error;
};

std::int64_t unix_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

nlohmann::json json_line(const Fetch& f, std::string_view protocol) {
  auto j = app::fetch_json(f.url_text, f.response, protocol);
  if (f.expected_bytes) j["verified"] = !f.verify_error.has_value() && !f.response.error && f.response.status == 200;
  if (f.verify_error) j["verify_error"] = *f.verify_error;
  return j;
}

std::string cell(std::optional<double> v) { return v ? fmt::format("{:.3f}", *v) : "-"; }

// The expected size when the path is /bytes/N (query ignored).
std::optional<std::uint64_t> bytes_route_size(const http::Url& url) {
  std::string_view path = url.path;
  path = path.substr(0, path.find('?'));
  constexpr std::string_view prefix = "/bytes/";
  if (path.substr(0, prefix.size()) != prefix) return std::nullopt;
  return http::parse_size(path.substr(prefix.size()));
}

int run(const GetOptions& o) {
  if (o.h2 && o.h3) {
    std::cerr << "quiclab get: choose one of --h2 and --h3\n";
    return kExitUsage;
  }
  if (o.insecure && !o.cacert.empty()) {
    std::cerr << "quiclab get: --insecure and --cacert exclude each other\n";
    return kExitUsage;
  }
  if (!o.data.empty() && !o.data_file.empty()) {
    std::cerr << "quiclab get: use --data or --data-file, not both\n";
    return kExitUsage;
  }
  const auto protocol = o.h3 ? http::Protocol::h3 : http::Protocol::h2;

  http::Headers extra;
  for (const auto& h : o.headers) {
    auto colon = h.find(':');
    if (colon == std::string::npos || colon == 0) {
      std::cerr << "quiclab get: bad header '" << h << "' (want 'name: value')\n";
      return kExitUsage;
    }
    std::string name = h.substr(0, colon), value = h.substr(colon + 1);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    value.erase(0, value.find_first_not_of(" \t"));
    extra.push_back({name, value});
  }

  std::shared_ptr<http::BodySource> body;
  if (!o.data.empty()) body = std::make_shared<http::MemoryBody>(std::string_view(o.data));
  if (!o.data_file.empty()) {
    std::ifstream in(o.data_file, std::ios::binary);
    if (!in) {
      std::cerr << "quiclab get: cannot read " << o.data_file << ": " << std::strerror(errno) << "\n";
      return kExitUsage;
    }
    Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    body = std::make_shared<http::MemoryBody>(std::move(bytes));
  }
  std::string method = !o.method.empty() ? o.method : (body ? "POST" : "GET");

  // Parse every URL before any traffic: a typo is a usage error, not a half run.
  std::vector<Fetch> fetches;
  for (const auto& text : o.urls) {
    auto url = http::Url::parse(text);
    if (!url) {
      std::cerr << "quiclab get: bad URL '" << text << "': " << url.error().message << "\n";
      return kExitUsage;
    }
    for (unsigned i = 0; i < o.repeat; ++i) {
      Fetch f;
      f.url = *url;
      f.url_text = url->to_string();
      if (o.verify_bytes) f.expected_bytes = bytes_route_size(*url);
      fetches.push_back(std::move(f));
    }
  }

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> out_file(nullptr, &std::fclose);
  if (!o.output.empty()) {
    out_file.reset(std::fopen(o.output.c_str(), "wb"));
    if (!out_file) {
      std::cerr << "quiclab get: cannot write " << o.output << ": " << std::strerror(errno) << "\n";
      return kExitUsage;
    }
  }
  const std::size_t output_index = fetches.size() - 1;  // -o: the last (or only) request
  bool output_failed = false;

  http::ClientOptions copts;
  copts.insecure = o.insecure;
  copts.ca_file = o.cacert;
  copts.max_concurrent_streams = std::max(1u, o.streams);
  copts.timeout_ms = o.timeout_ms;
  copts.attempt_delay_ms = o.attempt_delay_ms;
  copts.session_file = o.session_file;
  copts.qlog_dir = o.qlog_dir;
  copts.ack_thresh = o.ack_thresh;
  copts.tls_cipher = o.tls_cipher;
  copts.tls_group = o.tls_group;
  copts.max_udp_payload = o.udp_payload.forced;
  if (!o.h3 && !o.alt_svc && (!o.qlog_dir.empty() || o.ack_thresh > 0)) {
    std::cerr << "quiclab get: --qlog-dir and --ack-thresh need --h3 (or --alt-svc)\n";
    return kExitUsage;
  }
  if (o.h3 && o.alt_svc) {
    std::cerr << "quiclab get: --alt-svc starts on HTTP/2; do not combine it with --h3\n";
    return kExitUsage;
  }

  uv::Loop loop;
  std::map<std::string, std::unique_ptr<http::Client>> clients;  // one connection per origin
  std::map<std::string, std::size_t> outstanding;
  std::vector<std::string> origin_order;
  for (const auto& f : fetches) {
    auto key = app::origin_key(f.url);
    if (clients.count(key)) {
      ++outstanding[key];
      continue;
    }
    // With --alt-svc the session file is HTTP/3's (the HTTP/2 connection only finds the alternative).
    auto first_opts = copts;
    if (o.alt_svc) first_opts.session_file.clear();
    auto client = app::make_client(protocol, loop, f.url, first_opts);
    if (!client) {
      std::cerr << "quiclab get: " << client.error().message << "\n";
      return kExitUsage;
    }
    if (o.alt_svc) {
      client =
          std::unique_ptr<http::Client>(std::make_unique<h3::AltSvcClient>(loop, f.url, copts, std::move(*client)));
    }
    clients.emplace(key, std::move(*client));
    outstanding[key] = 1;
    origin_order.push_back(key);
  }

  const Timestamp t0 = uv::Loop::hrtime();
  // The wall clock against the monotonic one: start_unix_us lines the
  // records up with packet captures and qlog traces (their reference_time).
  const std::int64_t unix_offset_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count() -
      static_cast<std::int64_t>(uv::Loop::hrtime());
  std::map<std::string, http::ConnectionInfo> infos;
  for (const auto& key : origin_order) {
    auto* c = clients[key].get();
    c->connect([&infos, key, c](Status st) {
      if (st) infos[key] = c->info();
    });
  }
  for (std::size_t i = 0; i < fetches.size(); ++i) {
    auto& f = fetches[i];
    http::ClientRequest req;
    req.method = method;
    req.url = f.url;
    req.headers = extra;
    req.body = body;
    http::BodyCallback on_body;
    bool verify = f.expected_bytes.has_value();
    bool to_file = out_file && i == output_index;
    if (verify || to_file) {
      on_body = [&f, verify, to_file, &out_file, &output_failed](ByteView chunk) {
        if (verify && !f.mismatch && !http::check_generated(f.offset, chunk)) f.mismatch = true;
        f.offset += chunk.size();
        if (to_file && !output_failed && std::fwrite(chunk.data(), 1, chunk.size(), out_file.get()) != chunk.size()) {
          output_failed = true;
        }
      };
    }
    auto key = app::origin_key(f.url);
    clients[key]->submit(std::move(req), std::move(on_body),
                         [&f, &clients, &outstanding, key](http::ClientResponse&& r) {
                           f.response = std::move(r);
                           f.done = true;
                           f.done_unix_us = unix_now_us();
                           if (--outstanding[key] == 0) clients[key]->close(nullptr);
                         });
  }
  loop.run();
  const Timestamp wall = uv::Loop::hrtime() - t0;
  clients.clear();
  loop.close();

  // Verification and exit status.
  int http_errors = 0, failures = 0;
  std::uint64_t total_bytes = 0;
  std::map<std::string, int> error_counts;
  for (auto& f : fetches) {
    if (!f.done) f.response.error = make_error(ErrorDomain::generic, EINTR, "request did not complete");
    if (f.expected_bytes && !f.response.error && f.response.status == 200) {
      if (f.mismatch) {
        f.verify_error = "body differs from the generated /bytes pattern";
      } else if (f.response.body_bytes != *f.expected_bytes) {
        f.verify_error = fmt::format("got {} bytes, expected {}", f.response.body_bytes, *f.expected_bytes);
      }
    }
    total_bytes += f.response.body_bytes;
    if (f.response.error) {
      ++failures;
      ++error_counts[f.response.error->message];
    } else if (f.verify_error) {
      ++failures;
      ++error_counts[f.url_text + ": " + *f.verify_error];
    } else if (f.response.status >= 400) {
      ++http_errors;
    }
  }
  if (output_failed) {
    ++failures;
    ++error_counts["writing " + o.output + " failed"];
  }

  const auto proto_name = http::to_string(protocol);
  if (o.json) {
    for (const auto& f : fetches) {
      auto j = json_line(f, proto_name);
      if (const auto start = f.response.timing.start; start != 0)
        j["start_unix_us"] = (static_cast<std::int64_t>(start) + unix_offset_ns) / 1000;
      // Read off the wall clock itself, not start_unix_us + total: a packet
      // capture's stamps are that clock's, which may be slewed against the
      // monotonic one mid-run (a VM's clock was, by 0.5 %, for seconds).
      if (f.done_unix_us != 0) j["complete_unix_us"] = f.done_unix_us;
      auto it = infos.find(app::origin_key(f.url));
      // The address that answered (Happy Eyeballs may have tried others first).
      if (it != infos.end() && !it->second.peer_address.empty()) j["peer"] = it->second.peer_address;
      // What TLS the connection really negotiated (the parity table compares them).
      if (it != infos.end() && !it->second.tls_cipher.empty()) {
        j["tls"] = {{"library", it->second.tls_library},
                    {"version", it->second.tls_version},
                    {"cipher", it->second.tls_cipher},
                    {"group", it->second.tls_group}};
      }
      // Resumption facts of the request's connection (false when it never
      // completed); HTTP/2 resumes without early data.
      j["resumed"] = it != infos.end() && it->second.resumed;
      if (j["protocol"] == "h3") j["early_data"] = it != infos.end() && it->second.early_data_accepted;
      std::cout << j.dump() << "\n";
    }
  } else {
    std::cout << fmt::format("{:<44} {:>6} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}\n", "url", "status", "bytes", "connect",
                             "tls", "sent", "ttfb", "total");
    for (const auto& f : fetches) {
      const auto& t = f.response.timing;
      std::string status = f.response.error || f.verify_error ? "ERR" : std::to_string(f.response.status);
      std::string url = f.url_text.size() > 44 ? "…" + f.url_text.substr(f.url_text.size() - 42) : f.url_text;
      std::cout << fmt::format(
          "{:<44} {:>6} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}\n", url, status, f.response.body_bytes,
          cell(app::since_connection_start(t, t.connected)), cell(app::since_connection_start(t, t.handshake_done)),
          cell(app::since_connection_start(t, t.request_sent)), cell(app::since_connection_start(t, t.first_byte)),
          cell(app::since_connection_start(t, t.complete)));
    }
    std::string conn;
    for (const auto& [key, info] : infos) {
      conn += fmt::format("; {} {} {} {}", key, info.protocol, info.tls_version, info.peer_address);
      if (!info.tls_cipher.empty())
        conn += fmt::format(" {} {} ({})", info.tls_cipher, info.tls_group, info.tls_library);
      conn += fmt::format(" resumed={}", info.resumed ? "yes" : "no");
      if (info.protocol == "h3") conn += fmt::format(" early_data={}", info.early_data_accepted ? "accepted" : "no");
    }
    std::cout << fmt::format(
        "{} requests: {} ok, {} HTTP errors, {} failed; {} bytes in {:.3f} ms ({:.1f} MB/s){}\n", fetches.size(),
        fetches.size() - static_cast<std::size_t>(http_errors + failures), http_errors, failures, total_bytes,
        to_ms(wall), wall ? static_cast<double>(total_bytes) / 1e6 / (static_cast<double>(wall) / 1e9) : 0.0, conn);
    std::cout << "(times in ms since the start of the request's connection)\n";
  }
  for (const auto& [msg, n] : error_counts) {
    std::cerr << "quiclab get: " << msg << (n > 1 ? fmt::format(" ({} requests)", n) : "") << "\n";
  }
  if (failures) return kExitTransport;
  if (http_errors) return kExitHttpError;
  return kExitOk;
}

const Registration reg{
    "get", "Fetch URLs over HTTP/2 or HTTP/3 with a per-request timing breakdown", [](CLI::App& sub) -> Runner {
      auto o = std::make_shared<GetOptions>();
      sub.footer(
          "Output: a table per request (status, body bytes, and the ms from the start of the\n"
          "connection to: TCP connect, TLS handshake done, request sent, first response byte,\n"
          "response complete) and a summary line. With --json, one JSON object per line:\n"
          "  url, protocol (\"h2\"|\"h3\"), status (0 if none), bytes (response body),\n"
          "  connect, handshake, sent, ttfb, total (ms since the connection start; null if not\n"
          "  reached), start_unix_us and complete_unix_us (the connection start and the\n"
          "  response's end on the wall clock, µs since the Unix epoch), peer (the address that answered), error (only "
          "on failure),\n"
          "  verified/verify_error (with --verify-bytes);\n"
          "  resumed (TLS session resumption), and with --h3 early_data (0-RTT accepted).\n"
          "Exit codes: 0 all responses 2xx/3xx, 1 some 4xx/5xx, 2 usage error (bad flag or URL),\n"
          "3 transport failure (connect, TLS, reset, timeout, body verification).\n"
          "SSLKEYLOGFILE=path appends TLS secrets for Wireshark.");
      auto* h2 = sub.add_flag("--h2", o->h2, "HTTP/2 over TCP+TLS (the default)");
      auto* h3 = sub.add_flag("--h3", o->h3, "HTTP/3 over QUIC");
      h2->excludes(h3);
      auto* insecure = sub.add_flag("-k,--insecure", o->insecure, "Do not verify the server's certificate");
      auto* cacert = sub.add_option("--cacert", o->cacert, "Trust the CA certificate(s) in this PEM file")
                         ->check(CLI::ExistingFile);
      insecure->excludes(cacert);
      sub.add_option("-n,--repeat", o->repeat, "Fetch each URL N times")
          ->check(CLI::Range(1u, 1000000u))
          ->capture_default_str();
      sub.add_option("-m,--max-streams", o->streams, "Concurrent streams per connection")
          ->check(CLI::Range(1u, 100000u))
          ->capture_default_str();
      sub.add_flag("--json", o->json, "JSON lines instead of the table");
      sub.add_option("-o,--output", o->output, "Write the response body of the last request to FILE");
      sub.add_flag("--verify-bytes", o->verify_bytes, "Check /bytes/N bodies against the generated pattern");
      sub.add_option("-X,--method", o->method, "Request method (default GET, or POST with a body)");
      sub.add_option("-d,--data", o->data, "Request body (sent with POST unless -X says otherwise)");
      sub.add_option("--data-file", o->data_file, "Request body from a file")->check(CLI::ExistingFile);
      // One value per -H, as in curl: a vector option would otherwise take every
      // following word (the URL too) until the next flag.
      sub.add_option("-H,--header", o->headers, "Extra request header 'name: value' (repeat -H for more)")
          ->allow_extra_args(false);
      sub.add_option("--timeout", o->timeout_ms, "Fail when the server sends nothing for this many ms")
          ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{3600000}))
          ->capture_default_str();
      sub.add_option("--happy-eyeballs-timeout-ms", o->attempt_delay_ms,
                     "When a host name has several addresses (IPv6 first, then IPv4, interleaved),\n"
                     "start the next one this many ms after the last unless it answered (RFC 8305)")
          ->check(CLI::Range(std::uint64_t{10}, std::uint64_t{10000}))
          ->capture_default_str();
      sub.add_option("--session-file", o->session_file,
                     "Store the server's TLS session ticket in FILE and resume from it when it exists:\n"
                     "HTTP/3 with 0-RTT (requests sent as early data; the file keeps the transport\n"
                     "parameters too), HTTP/2 with TLS 1.3 resumption (no certificate, no early data)");
      sub.add_flag("--alt-svc", o->alt_svc,
                   "Start on HTTP/2; when the first response offers Alt-Svc h3=\":PORT\", send the other\n"
                   "requests over HTTP/3 (JSON 'protocol' says which carried each)");
      add_tls_suite_options(sub, o->tls_cipher, o->tls_group, "offer");
      sub.add_option("--ack-thresh", o->ack_thresh,
                     "HTTP/3: acknowledge at once after N ack-eliciting packets (default 8; 2 acts like Linux "
                     "TCP's delayed ACK)")
          ->check(CLI::Range(std::size_t{1}, std::size_t{64}));
      sub.add_option("--qlog-dir", o->qlog_dir, "HTTP/3: write a qlog file per connection into DIR")
          ->check(CLI::ExistingDirectory);
      add_udp_payload_option(sub, o->udp_payload);
      sub.add_option("url", o->urls, "https:// URLs")->required();
      return [o] { return run(*o); };
    }};

}  // namespace
}  // namespace quiclab::cli
