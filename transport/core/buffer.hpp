// Byte containers shared by every module: owned bytes and non-owning views.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace quiclab {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;
using MutableByteView = std::span<std::uint8_t>;

inline ByteView as_bytes(std::string_view s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }
inline std::string_view as_string(ByteView b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }
inline void append(Bytes& out, ByteView in) { out.insert(out.end(), in.begin(), in.end()); }

/// A per-thread stock of large buffers for the send path (TLS output batches
/// on their way to uv_write). A fresh allocation of 128 KiB or more comes from
/// mmap or from heap the allocator just trimmed, so the first write into it
/// page-faults and the kernel zeroes every page: on a 100 MB HTTP/2 transfer
/// that was the largest item in the server's profile (docs/h2.md). Reusing a
/// few warm buffers avoids it. Bounded in count and size, so what it keeps is a
/// fixed cost per process, not per connection.
namespace buffer_pool {
/// An empty buffer with capacity for at least `capacity` bytes.
Bytes take(std::size_t capacity);
/// Hands a buffer back; kept when the stock has room and the buffer is large
/// enough to be worth keeping, freed otherwise.
void give(Bytes&& buffer);
/// Buffers in this thread's stock now.
std::size_t stocked();
}  // namespace buffer_pool

/// Lower-case hex, for logs and test failure messages.
std::string to_hex(ByteView b);

}  // namespace quiclab
