// Where the QUIC cores' qlog traces go.
//
// The cores (quic::ServerCore, h3::ClientConnection) never open files: each
// new connection asks a QlogSink for a writer, named by the connection's hex
// ID, and hands it the JSON-SEQ chunks ngtcp2 produces. The adapters turn the
// user's --qlog-dir into a sink with qlog_to_directory() (one <id>.sqlog per
// connection, as before); tests keep traces in memory.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>

#include "transport/core/buffer.hpp"
#include "transport/core/result.hpp"

namespace quiclab::quic {

/// One connection's trace.
class QlogWriter {
 public:
  virtual ~QlogWriter() = default;
  /// A chunk of the trace, in order.
  virtual void write(ByteView data) = 0;
  /// The trace is complete (ngtcp2's final chunk was written); nothing follows.
  virtual void finish() {}
};

/// Makes the writer for a new connection; connection_id is the hex of the
/// connection ID that names it (the server's first source CID, the client's
/// source CID). A null writer means "no trace for this one". An error: the
/// server logs it and goes on without a trace; the client fails to connect.
using QlogSink = std::function<Result<std::unique_ptr<QlogWriter>>(std::string_view connection_id)>;

/// Writes DIR/<connection_id>.sqlog for every connection; `dir` must exist.
/// Errors: the file cannot be created (domain os, the path in the message).
/// An empty dir gives an empty sink (no qlog).
QlogSink qlog_to_directory(std::filesystem::path dir);

}  // namespace quiclab::quic
