#include "transport/http/app.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <list>
#include <unordered_map>

#include "transport/core/log.hpp"

namespace quiclab::http {

namespace fs = std::filesystem;

std::string_view to_string(TlsFailure reason) {
  switch (reason) {
    case TlsFailure::handshake:
      return "handshake";
    case TlsFailure::peer_alert:
      return "peer_alert";
    case TlsFailure::record:
      return "record";
  }
  return "unknown";
}

void Metrics::count_response(Protocol p, int status) {
  auto& c = of(p);
  c.requests_total++;
  if (status < 300)
    c.responses_2xx++;
  else if (status < 400)
    c.responses_3xx++;
  else if (status < 500)
    c.responses_4xx++;
  else
    c.responses_5xx++;
}

std::string Metrics::render() const {
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help, auto getter) {
    out += fmt::format("# HELP quiclab_{} {}\n# TYPE quiclab_{} {}\n", name, help, name, type);
    for (auto p : {Protocol::h2, Protocol::h3}) {
      out += fmt::format("quiclab_{}{{protocol=\"{}\"}} {}\n", name, to_string(p), getter(of(p)));
    }
  };
  family("connections_total", "counter", "Connections accepted.",
         [](const Counters& c) { return c.connections_total; });
  family("connections_active", "gauge", "Connections open now.",
         [](const Counters& c) { return c.connections_active; });
  family("streams_total", "counter", "Request streams opened by peers.",
         [](const Counters& c) { return c.streams_total; });
  family("requests_total", "counter", "Requests answered.", [](const Counters& c) { return c.requests_total; });
  out += "# HELP quiclab_responses_total Responses by status class.\n# TYPE quiclab_responses_total counter\n";
  for (auto p : {Protocol::h2, Protocol::h3}) {
    const auto& c = of(p);
    const std::pair<const char*, std::uint64_t> classes[] = {
        {"2xx", c.responses_2xx}, {"3xx", c.responses_3xx}, {"4xx", c.responses_4xx}, {"5xx", c.responses_5xx}};
    for (auto [cls, n] : classes) {
      out += fmt::format("quiclab_responses_total{{protocol=\"{}\",class=\"{}\"}} {}\n", to_string(p), cls, n);
    }
  }
  family("request_body_bytes_total", "counter", "Request body bytes received.",
         [](const Counters& c) { return c.request_body_bytes; });
  family("response_body_bytes_total", "counter", "Response body bytes sent.",
         [](const Counters& c) { return c.response_body_bytes; });
  family("protocol_errors_total", "counter", "Connections or streams ended for a peer's protocol error.",
         [](const Counters& c) { return c.protocol_errors; });
  family("internal_errors_total", "counter",
         "Library calls that failed where they should not (out of memory, unexpected state).",
         [](const Counters& c) { return c.internal_errors; });
  // TLS over TCP is HTTP/2's alone (QUIC's TLS failures are QUIC connection errors).
  out +=
      "# HELP quiclab_tls_failures_total TLS sessions that ended in a failure, not a clean close.\n"
      "# TYPE quiclab_tls_failures_total counter\n";
  for (std::size_t r = 0; r < kTlsFailureReasons; ++r) {
    out += fmt::format("quiclab_tls_failures_total{{protocol=\"h2\",reason=\"{}\"}} {}\n",
                       to_string(static_cast<TlsFailure>(r)), of(Protocol::h2).tls_failures[r]);
  }
  out += fmt::format(
      "# HELP quiclab_tls_records_total TLS records written for HTTP/2 streams, by size: small (one TCP segment, "
      "dynamic record sizing) or full (up to 16 KiB).\n"
      "# TYPE quiclab_tls_records_total counter\n"
      "quiclab_tls_records_total{{protocol=\"h2\",size=\"small\"}} {}\n"
      "quiclab_tls_records_total{{protocol=\"h2\",size=\"full\"}} {}\n",
      of(Protocol::h2).tls_records_small, of(Protocol::h2).tls_records_full);
  return out;
}

std::optional<std::string> percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return std::nullopt;
    unsigned v = 0;
    auto [p, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, v, 16);
    if (ec != std::errc() || p != in.data() + i + 3) return std::nullopt;
    out.push_back(static_cast<char>(v));
    i += 2;
  }
  return out;
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t mult = 1;
  switch (text.back()) {
    case 'k':
    case 'K':
      mult = 1024;
      break;
    case 'm':
    case 'M':
      mult = 1024 * 1024;
      break;
    case 'g':
    case 'G':
      mult = 1024ULL * 1024 * 1024;
      break;
    default:
      break;
  }
  if (mult != 1) text.remove_suffix(1);
  if (text.empty() || text.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  if (v > UINT64_MAX / mult) return std::nullopt;
  return v * mult;
}

namespace {
// The string checks of a static request path (no file system access): returns
// the decoded path ("/a/b") or why it is refused.
std::variant<std::string, PathError> decode_static_path(std::string_view request_path) {
  auto q = request_path.find_first_of("?#");
  std::string_view raw = request_path.substr(0, q);
  if (raw.empty() || raw.front() != '/') return PathError{400, "path must start with '/'"};
  // Encoded separators and dots are refused before decoding: they only serve to
  // smuggle "..", and no file we serve needs them.
  for (std::size_t i = 0; i + 2 < raw.size(); ++i) {
    if (raw[i] != '%') continue;
    char a = raw[i + 1], b = static_cast<char>(std::tolower(static_cast<unsigned char>(raw[i + 2])));
    if ((a == '2' && (b == 'e' || b == 'f')) || (a == '5' && b == 'c') || (a == '0' && b == '0')) {
      return PathError{400, "encoded '.', '/', '\\' or NUL in path"};
    }
  }
  auto decoded = percent_decode(raw);
  if (!decoded) return PathError{400, "malformed percent-encoding in path"};
  if (decoded->find('\0') != std::string::npos) return PathError{400, "NUL in path"};
  if (decoded->find('\\') != std::string::npos) return PathError{400, "backslash in path"};
  // Check every segment: "." and ".." are never served.
  std::string_view d(*decoded);
  std::size_t start = 1;
  while (start <= d.size()) {
    auto end = d.find('/', start);
    if (end == std::string_view::npos) end = d.size();
    auto seg = d.substr(start, end - start);
    if (seg == "." || seg == "..") return PathError{400, "'.' or '..' segment in path"};
    start = end + 1;
  }
  return std::move(*decoded);
}

// Fast path for serve_static: openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
// lets the kernel prove the path stays under the root in one path walk, where
// canonical() costs a readlink per component (it dominated the 1 KB benchmark).
// Returns an fd, or -errno (-EXDEV when resolution would leave the root, e.g. an
// absolute symlink: the caller then takes the canonical() path, which decides).
int open_beneath(int dirfd, const char* rel) {
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
  return fd >= 0 ? static_cast<int>(fd) : -errno;
}
}  // namespace

std::variant<fs::path, PathError> resolve_static_path(const fs::path& root, std::string_view request_path) {
  auto checked = decode_static_path(request_path);
  if (auto* err = std::get_if<PathError>(&checked)) return *err;
  std::string_view d(std::get<std::string>(checked));
  std::error_code ec;
  fs::path canon_root = fs::canonical(root, ec);
  if (ec) return PathError{404, "root not found"};
  fs::path target = canon_root / fs::path(d.substr(1));
  if (!d.empty() && d.back() == '/') target /= "index.html";
  fs::path canon = fs::canonical(target, ec);
  if (ec) return PathError{404, "not found"};
  if (fs::is_directory(canon, ec)) {
    canon = fs::canonical(canon / "index.html", ec);
    if (ec) return PathError{404, "not found"};
  }
  // The canonical target must lie inside the canonical root: a symlink (or
  // anything else) leading outside is refused.
  auto rel = canon.lexically_relative(canon_root);
  if (rel.empty() || *rel.begin() == "..") return PathError{403, "path leaves the root"};
  if (!fs::is_regular_file(canon, ec)) return PathError{404, "not a regular file"};
  return canon;
}

std::string_view mime_type_of(std::string_view path) {
  static const std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".txt", "text/plain; charset=utf-8"},
      {".css", "text/css"},
      {".js", "text/javascript"},
      {".json", "application/json"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".svg", "image/svg+xml"},
      {".wasm", "application/wasm"},
      {".ico", "image/x-icon"},
      {".pdf", "application/pdf"},
  };
  // The extension as std::filesystem::path::extension() defines it: from the
  // last '.' of the file name, unless the name starts with it (".profile").
  auto name = path.substr(path.rfind('/') == std::string_view::npos ? 0 : path.rfind('/') + 1);
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || name == "..") return "application/octet-stream";
  auto ext = name.substr(dot);
  for (auto [e, t] : kTypes) {
    if (e.size() == ext.size() && std::equal(e.begin(), e.end(), ext.begin(), [](char a, char b) {
          return a == std::tolower(static_cast<unsigned char>(b));
        })) {
      return t;
    }
  }
  return "application/octet-stream";
}

std::string_view mime_type(const fs::path& p) { return mime_type_of(p.native()); }

// The open-file cache behind serve_static. Keyed by the decoded request path;
// each entry keeps the file open so a hit costs at most one fstat (to notice a
// change) instead of openat2 + fstat + pread + close. Files up to
// static_cache_max_file_bytes are read once and served from shared memory.
// Path checks are not weakened: an entry only exists after the openat2
// (RESOLVE_BENEATH) of a miss admitted the path, and it is dropped as soon as
// the file it opened changes or is unlinked.
class App::StaticCache {
 public:
  struct Entry {
    std::string key;
    std::shared_ptr<const OpenFile> file;
    std::shared_ptr<const Bytes> data;  // null: served with pread from file
    std::uint64_t size = 0;
    std::string content_type;
    dev_t dev = 0;
    ino_t ino = 0;
    timespec mtime{}, ctime{};
    Timestamp checked = 0;
  };

  explicit StaticCache(const AppConfig& c) : config_(c) {}

  // A response for key if a valid entry exists.
  std::optional<Response> lookup(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) {
      stats_.misses++;
      return std::nullopt;
    }
    auto entry = it->second;
    auto now = clock().now();
    if (now - entry->checked >= config_.static_cache_revalidate_ns) {
      struct stat st {};
      if (::fstat(entry->file->fd(), &st) != 0 || !same_file(*entry, st)) {
        stats_.invalidations++;
        stats_.misses++;
        erase(entry);
        return std::nullopt;
      }
      entry->checked = now;
    }
    lru_.splice(lru_.begin(), lru_, entry);
    stats_.hits++;
    return respond(*entry);
  }

  // Caches an opened regular file (takes ownership of fd) and answers from it.
  Response insert(std::string key, int fd, const struct stat& st, std::string_view content_type) {
    Entry e;
    e.key = std::move(key);
    e.file = std::make_shared<OpenFile>(fd);
    e.size = static_cast<std::uint64_t>(st.st_size);
    e.content_type = std::string(content_type);
    e.dev = st.st_dev;
    e.ino = st.st_ino;
    e.mtime = st.st_mtim;
    e.ctime = st.st_ctim;
    e.checked = clock().now();
    if (e.size <= config_.static_cache_max_file_bytes && e.size <= config_.static_cache_bytes) {
      e.data = read_all(fd, e.size);
      // A short read means the file changed under us: serve it with pread, uncached.
      if (!e.data) return respond(e);
    }
    if (auto old = index_.find(e.key); old != index_.end()) erase(old->second);
    bytes_ += e.data ? e.size : 0;
    lru_.push_front(std::move(e));
    index_.emplace(lru_.front().key, lru_.begin());
    auto resp = respond(lru_.front());
    while (!lru_.empty() && (index_.size() > config_.static_cache_entries || bytes_ > config_.static_cache_bytes)) {
      stats_.evictions++;
      erase(std::prev(lru_.end()));
    }
    return resp;
  }

  StaticCacheStats stats() const {
    auto s = stats_;
    s.entries = index_.size();
    s.bytes = bytes_;
    return s;
  }

 private:
  using List = std::list<Entry>;

  const Clock& clock() const { return config_.clock ? *config_.clock : SteadyClock::instance(); }

  static bool same_file(const Entry& e, const struct stat& st) {
    return st.st_nlink > 0 && S_ISREG(st.st_mode) && st.st_dev == e.dev && st.st_ino == e.ino &&
           static_cast<std::uint64_t>(st.st_size) == e.size && st.st_mtim.tv_sec == e.mtime.tv_sec &&
           st.st_mtim.tv_nsec == e.mtime.tv_nsec && st.st_ctim.tv_sec == e.ctime.tv_sec &&
           st.st_ctim.tv_nsec == e.ctime.tv_nsec;
  }

  static std::shared_ptr<const Bytes> read_all(int fd, std::uint64_t size) {
    auto data = std::make_shared<Bytes>(size);
    std::uint64_t done = 0;
    while (done < size) {
      auto n = ::pread(fd, data->data() + done, size - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return nullptr;
      done += static_cast<std::uint64_t>(n);
    }
    return data;
  }

  static Response respond(const Entry& e) {
    Response r;
    r.headers.push_back({"content-type", e.content_type});
    if (e.data)
      r.body = std::make_shared<SharedMemoryBody>(e.data);
    else
      r.body = std::make_shared<SharedFileBody>(e.file, e.size);
    return r;
  }

  void erase(List::iterator it) {
    bytes_ -= it->data ? it->size : 0;
    index_.erase(it->key);
    lru_.erase(it);
  }

  const AppConfig& config_;
  List lru_;  // most recently used first
  std::unordered_map<std::string, List::iterator> index_;
  std::uint64_t bytes_ = 0;
  StaticCacheStats stats_;
};

App::App(AppConfig config, Metrics& metrics)
    : config_(std::move(config)),
      metrics_(metrics),
      body_budget_(config_.max_buffered_body_bytes),
      cache_(std::make_unique<StaticCache>(config_)) {
  route("GET", "/health", [](const Request&) { return Response::text(200, "ok\n"); });
  route("GET", "/metrics", [this](const Request&) {
    return Response::text(200, metrics_.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  route("POST", "/echo", [](const Request& req) {
    Response r;
    r.status = 200;
    auto ct = find_header(req.headers, "content-type");
    r.headers.push_back({"content-type", ct ? std::string(*ct) : "application/octet-stream"});
    r.body = std::make_shared<MemoryBody>(req.body);
    return r;
  });
  route(
      "GET", "/bytes", [this](const Request& req) { return serve_bytes(req); }, true);
}

App::~App() {
  cache_.reset();
  if (root_fd_ >= 0) ::close(root_fd_);
}

StaticCacheStats App::static_cache_stats() const { return cache_->stats(); }

int App::root_fd() const {
  // Opened once; retried on later requests while the root does not exist.
  if (root_fd_ < 0 && config_.root) root_fd_ = ::open(config_.root->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  return root_fd_;
}

void App::route(std::string method, std::string path, Handler handler, bool prefix) {
  routes_.push_back(Route{std::move(method), std::move(path), prefix, std::move(handler)});
}

Response App::serve_bytes(const Request& req) const {
  std::string_view path = req.path;
  path = path.substr(0, path.find_first_of("?#"));
  constexpr std::string_view kPrefix = "/bytes/";
  if (path.substr(0, kPrefix.size()) != kPrefix) return Response::text(400, "use /bytes/N\n");
  auto n = parse_size(path.substr(kPrefix.size()));
  if (!n) return Response::text(400, "bad size in /bytes/N: digits with an optional k, m or g suffix\n");
  if (*n > config_.max_generated_bytes) {
    return Response::text(413, fmt::format("/bytes/N is limited to {} bytes\n", config_.max_generated_bytes));
  }
  Response r;
  r.headers.push_back({"content-type", "application/octet-stream"});
  r.body = std::make_shared<GeneratedBody>(*n);
  return r;
}

std::optional<Response> App::serve_static_beneath(const Request& req) const {
  auto checked = decode_static_path(req.path);
  if (std::holds_alternative<PathError>(checked)) return std::nullopt;  // the full path reports it
  auto& key = std::get<std::string>(checked);
  bool cache = config_.static_cache_entries > 0;
  if (cache) {
    if (auto hit = cache_->lookup(key)) return hit;
  }
  int root = root_fd();
  if (root < 0) return std::nullopt;
  std::string rel = key.substr(1);
  if (rel.empty() || rel.back() == '/') rel += "index.html";
  int fd = open_beneath(root, rel.c_str());
  struct stat st {};
  if (fd >= 0 && ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    // A directory maps to its index.html, like nghttpd.
    int dir = fd;
    rel += "/index.html";
    fd = open_beneath(dir, "index.html");
    ::close(dir);
    if (fd >= 0 && ::fstat(fd, &st) != 0) st = {};
  }
  if (fd == -ENOENT || fd == -ENOTDIR) return Response::text(404, "not found\n");
  if (fd < 0) return std::nullopt;  // EXDEV, ELOOP, EACCES, ENOSYS...: the canonical() path decides
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Response::text(404, "not a regular file\n");
  }
  if (cache) return cache_->insert(std::move(key), fd, st, mime_type_of(rel));
  Response r;
  r.headers.push_back({"content-type", std::string(mime_type_of(rel))});
  r.body = std::make_shared<FileBody>(fd, static_cast<std::uint64_t>(st.st_size));
  return r;
}

Response App::serve_static(const Request& req) const {
  if (!config_.root) return Response::text(404, "not found\n");
  if (auto fast = serve_static_beneath(req)) return std::move(*fast);
  auto resolved = resolve_static_path(*config_.root, req.path);
  if (auto* err = std::get_if<PathError>(&resolved)) {
    if (err->status != 404) log::warn("{} {}: refused static path: {}", req.peer.to_string(), req.path, err->reason);
    return Response::text(err->status, err->reason + "\n");
  }
  const auto& file = std::get<fs::path>(resolved);
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Response::text(errno == EACCES ? 403 : 404, "cannot open file\n");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Response::text(404, "not a regular file\n");
  }
  Response r;
  r.headers.push_back({"content-type", std::string(mime_type(file))});
  r.body = std::make_shared<FileBody>(fd, static_cast<std::uint64_t>(st.st_size));
  return r;
}

Response App::handle(const Request& req) const {
  try {
    std::string_view path = req.path;
    path = path.substr(0, path.find_first_of("?#"));
    const Route* exact = nullptr;
    const Route* prefix = nullptr;
    bool path_known = false;
    for (const auto& r : routes_) {
      bool match = r.prefix ? (path == r.path || (path.substr(0, r.path.size()) == r.path &&
                                                  path.size() > r.path.size() && path[r.path.size()] == '/'))
                            : path == r.path;
      if (!match) continue;
      path_known = true;
      if (!r.method.empty() && r.method != req.method) continue;
      if (r.prefix)
        prefix = &r;
      else
        exact = &r;
    }
    if (exact) return exact->handler(req);
    if (prefix) return prefix->handler(req);
    if (path_known) {
      auto resp = Response::text(405, "method not allowed\n");
      return resp;
    }
    if (req.method == "GET" || req.method == "HEAD") return serve_static(req);
    return Response::text(config_.root ? 405 : 404, config_.root ? "method not allowed\n" : "not found\n");
  } catch (const std::exception& e) {
    log::error("handler for {} {} failed: {}", req.method, req.path, e.what());
    return Response::text(500, "internal error\n");
  }
}

}  // namespace quiclab::http
