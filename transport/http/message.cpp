#include "transport/http/message.hpp"

#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace quiclab::http {

std::string_view to_string(Protocol p) { return p == Protocol::h2 ? "h2" : "h3"; }

std::optional<std::string_view> find_header(const Headers& headers, std::string_view name) {
  for (const auto& h : headers) {
    if (h.name.size() == name.size() && strncasecmp(h.name.data(), name.data(), name.size()) == 0) {
      return std::string_view(h.value);
    }
  }
  return std::nullopt;
}

std::int64_t MemoryBody::read(std::uint64_t offset, MutableByteView dst) {
  if (offset >= data_.size()) return 0;
  auto n = std::min<std::uint64_t>(dst.size(), data_.size() - offset);
  std::memcpy(dst.data(), data_.data() + offset, n);
  return static_cast<std::int64_t>(n);
}

ByteView MemoryBody::stable_view(std::uint64_t offset, std::size_t max) {
  if (offset >= data_.size()) return {};
  auto n = std::min<std::uint64_t>(max, data_.size() - offset);
  return ByteView(data_.data() + offset, n);
}

namespace {
// The generated body repeats a fixed 64 KiB block. Its bytes are printable so a
// body dumped to a terminal stays readable; the period is prime-ish relative to
// the block to keep neighbouring blocks distinguishable in hex dumps.
constexpr std::size_t kBlock = 64 * 1024;
const std::array<std::uint8_t, kBlock>& block() {
  static const auto b = [] {
    std::array<std::uint8_t, kBlock> a{};
    static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n";
    for (std::size_t i = 0; i < kBlock; ++i) a[i] = static_cast<std::uint8_t>(kAlphabet[i % (sizeof kAlphabet - 1)]);
    return a;
  }();
  return b;
}
}  // namespace

std::uint8_t generated_byte(std::uint64_t i) { return block()[i % kBlock]; }

bool check_generated(std::uint64_t offset, ByteView data) {
  const auto& b = block();
  std::size_t done = 0;
  while (done < data.size()) {
    auto pos = (offset + done) % kBlock;
    auto n = std::min(data.size() - done, kBlock - pos);
    if (std::memcmp(data.data() + done, b.data() + pos, n) != 0) return false;
    done += n;
  }
  return true;
}

std::int64_t GeneratedBody::read(std::uint64_t offset, MutableByteView dst) {
  auto view = stable_view(offset, dst.size());
  std::memcpy(dst.data(), view.data(), view.size());
  return static_cast<std::int64_t>(view.size());
}

ByteView GeneratedBody::stable_view(std::uint64_t offset, std::size_t max) {
  if (offset >= size_) return {};
  auto pos = offset % kBlock;
  auto n = std::min<std::uint64_t>({max, size_ - offset, kBlock - pos});
  return ByteView(block().data() + pos, n);
}

FileBody::~FileBody() {
  if (fd_ >= 0) ::close(fd_);
}

std::int64_t FileBody::read(std::uint64_t offset, MutableByteView dst) {
  if (offset >= size_) return 0;
  auto want = std::min<std::uint64_t>(dst.size(), size_ - offset);
  for (;;) {
    auto n = ::pread(fd_, dst.data(), want, static_cast<off_t>(offset));
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

OpenFile::~OpenFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::int64_t SharedMemoryBody::read(std::uint64_t offset, MutableByteView dst) {
  auto view = stable_view(offset, dst.size());
  if (!view.empty()) std::memcpy(dst.data(), view.data(), view.size());
  return static_cast<std::int64_t>(view.size());
}

ByteView SharedMemoryBody::stable_view(std::uint64_t offset, std::size_t max) {
  if (offset >= data_->size()) return {};
  auto n = std::min<std::uint64_t>(max, data_->size() - offset);
  return ByteView(data_->data() + offset, n);
}

std::int64_t SharedFileBody::read(std::uint64_t offset, MutableByteView dst) {
  if (offset >= size_) return 0;
  auto want = std::min<std::uint64_t>(dst.size(), size_ - offset);
  for (;;) {
    auto n = ::pread(file_->fd(), dst.data(), want, static_cast<off_t>(offset));
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

Response Response::text(int status, std::string_view body, std::string_view content_type) {
  Response r;
  r.status = status;
  r.headers.push_back({"content-type", std::string(content_type)});
  r.body = std::make_shared<MemoryBody>(body);
  return r;
}

}  // namespace quiclab::http
