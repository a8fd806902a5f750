#include "transport/quic/qlog.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace quiclab::quic {
namespace {

class FileQlog final : public QlogWriter {
 public:
  explicit FileQlog(std::FILE* f) : f_(f) {}
  ~FileQlog() override { close(); }
  FileQlog(const FileQlog&) = delete;
  FileQlog& operator=(const FileQlog&) = delete;
  void write(ByteView data) override {
    if (f_ != nullptr) std::fwrite(data.data(), 1, data.size(), f_);
  }
  void finish() override { close(); }

 private:
  void close() {
    if (f_ != nullptr) std::fclose(f_);
    f_ = nullptr;
  }
  std::FILE* f_;
};

}  // namespace

QlogSink qlog_to_directory(std::filesystem::path dir) {
  if (dir.empty()) return {};
  return [dir = std::move(dir)](std::string_view id) -> Result<std::unique_ptr<QlogWriter>> {
    auto path = dir / (std::string(id) + ".sqlog");
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) {
      return make_error(ErrorDomain::os, errno, "cannot open qlog file " + path.string() + ": " + std::strerror(errno));
    }
    return std::unique_ptr<QlogWriter>(std::make_unique<FileQlog>(f));
  };
}

}  // namespace quiclab::quic
