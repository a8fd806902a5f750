#include "transport/http/session_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

namespace quiclab::http {

namespace {

Error file_error(const std::filesystem::path& file, const std::string& what) {
  return make_error(ErrorDomain::config, EINVAL, "session file " + file.string() + ": " + what);
}

std::optional<Bytes> from_hex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  Bytes out;
  out.reserve(s.size() / 2);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < s.size(); i += 2) {
    int hi = nibble(s[i]), lo = nibble(s[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<std::uint8_t>(hi << 4 | lo));
  }
  return out;
}

}  // namespace

Result<SessionFields> read_session_file(const std::filesystem::path& file, std::string_view format, int version) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return make_error(ErrorDomain::config, ENOENT, "no session file " + file.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return make_error(ErrorDomain::os, EIO, "cannot read session file " + file.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    return file_error(file, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) return file_error(file, "not a JSON object");
  auto f = j.find("format");
  if (f == j.end() || !f->is_string() || *f != format) {
    return file_error(file, "\"format\" is not \"" + std::string(format) + "\"");
  }
  auto v = j.find("version");
  if (v == j.end() || !v->is_number_integer() || *v != version) {
    return file_error(file, "unsupported \"version\" (this quiclab writes " + std::to_string(version) + ")");
  }
  SessionFields out;
  for (const auto& [key, value] : j.items()) {
    if (key == "format" || key == "version") continue;
    if (!value.is_string()) return file_error(file, "\"" + key + "\" is not a string");
    auto b = from_hex(value.get_ref<const std::string&>());
    if (!b) return file_error(file, "\"" + key + "\" is not hex");
    out.emplace(key, std::move(*b));
  }
  return out;
}

Result<Bytes> required_field(const SessionFields& fields, const std::string& name, const std::filesystem::path& file) {
  auto it = fields.find(name);
  if (it == fields.end()) return file_error(file, "\"" + name + "\" is missing");
  if (it->second.empty()) return file_error(file, "\"" + name + "\" is empty");
  return it->second;
}

Status write_session_file(const std::filesystem::path& file, std::string_view format, int version,
                          const SessionFields& fields) {
  nlohmann::json j = {{"format", format}, {"version", version}};
  for (const auto& [key, value] : fields) j[key] = to_hex(value);
  std::string text = j.dump(2) + "\n";

  auto tmp = file;
  tmp += ".tmp";
  // The file is the user's alone (0600), also when an older temp file with a
  // wider mode is in the way.
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::fchmod(fd, 0600) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    return make_error(ErrorDomain::os, err, "cannot write session file " + tmp.string() + ": " + std::strerror(err));
  }
  std::size_t off = 0;
  while (off < text.size()) {
    auto n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return make_error(ErrorDomain::os, err, "cannot write session file " + tmp.string() + ": " + std::strerror(err));
    }
    off += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) {
    int err = errno;
    return make_error(ErrorDomain::os, err, "cannot write session file " + tmp.string() + ": " + std::strerror(err));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec)
    return make_error(ErrorDomain::os, ec.value(),
                      "cannot rename session file to " + file.string() + ": " + ec.message());
  return {};
}

}  // namespace quiclab::http
