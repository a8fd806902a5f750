#include "transport/core/buffer.hpp"

#include <algorithm>
#include <bit>

namespace quiclab {

namespace buffer_pool {
namespace {
constexpr std::size_t kMaxBuffers = 8;                 // a few batches in flight per loop
constexpr std::size_t kMinCapacity = 16 * 1024;        // smaller ones are cheap to allocate
constexpr std::size_t kMaxCapacity = 2 * 1024 * 1024;  // bigger ones go back to the allocator
thread_local std::vector<Bytes> stock;
}  // namespace

Bytes take(std::size_t capacity) {
  // The largest buffer kept is the likeliest to fit without growing.
  auto best = std::max_element(stock.begin(), stock.end(),
                               [](const Bytes& a, const Bytes& b) { return a.capacity() < b.capacity(); });
  Bytes out;
  if (best != stock.end()) {
    out = std::move(*best);
    stock.erase(best);
  }
  // Capacities in powers of two: a batch a little larger than the last one
  // then still fits, instead of growing into fresh (faulting) memory.
  if (out.capacity() < capacity) out.reserve(std::bit_ceil(std::max(capacity, kMinCapacity)));
  return out;
}

void give(Bytes&& buffer) {
  if (stock.size() >= kMaxBuffers || buffer.capacity() < kMinCapacity || buffer.capacity() > kMaxCapacity) {
    Bytes{}.swap(buffer);
    return;
  }
  buffer.clear();
  stock.push_back(std::move(buffer));
}

std::size_t stocked() { return stock.size(); }
}  // namespace buffer_pool

std::string to_hex(ByteView b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(b.size() * 2);
  for (auto byte : b) {
    out.push_back(kDigits[byte >> 4]);
    out.push_back(kDigits[byte & 0xf]);
  }
  return out;
}

}  // namespace quiclab
