// A stored TLS session (and what a protocol keeps with it) as a small JSON
// file, shared by the HTTP/2 and HTTP/3 clients' --session-file:
//   {"format": "quiclab-h3-session", "version": 2, "tls": HEX, ...}
// JSON keeps it inspectable and lets fields be added; it is a few KB at most.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "transport/core/buffer.hpp"
#include "transport/core/result.hpp"

namespace quiclab::http {

/// The fields of a session file (name -> bytes, stored as hex).
using SessionFields = std::map<std::string, Bytes>;

/// Reads a session file of `format` and `version`. Errors (domain config):
/// no such file (code ENOENT); content that is not such a file, or a field
/// that is not a hex string (EINVAL, the message says which).
Result<SessionFields> read_session_file(const std::filesystem::path& file, std::string_view format, int version);

/// Writes the file atomically (temp file + rename), mode 0600: the ticket
/// resumes the user's TLS session.
Status write_session_file(const std::filesystem::path& file, std::string_view format, int version,
                          const SessionFields& fields);

/// A field of `fields`, non-empty, or an EINVAL error naming it and the file.
Result<Bytes> required_field(const SessionFields& fields, const std::string& name, const std::filesystem::path& file);

}  // namespace quiclab::http
