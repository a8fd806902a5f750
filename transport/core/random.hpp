// Injected randomness. Protocol cores take a Random& instead of calling
// getrandom themselves, so a simulation can seed them and replay the same
// connection IDs, tokens and greasing decisions on every run.
//
// What cannot be seeded: GnuTLS draws its own randomness (TLS randoms, key
// shares, ECDSA nonces) from its own generator. Simulations that assert an
// exact event sequence use an Ed25519 certificate (deterministic signatures,
// fixed sizes), so GnuTLS's randomness changes bytes but never sizes or times.
#pragma once

#include <sys/random.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <random>

namespace quiclab {

class Random {
 public:
  virtual ~Random() = default;
  /// Fills dest with len random bytes. Never fails.
  virtual void fill(std::uint8_t* dest, std::size_t len) = 0;
  /// The operating system's generator (getrandom), shared by the process.
  static Random& system();
};

/// getrandom(2): what production code uses.
class SystemRandom final : public Random {
 public:
  void fill(std::uint8_t* dest, std::size_t len) override {
    while (len > 0) {
      auto n = ::getrandom(dest, len, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        // getrandom() cannot fail on Linux >= 3.17 once the pool is ready.
        std::abort();
      }
      dest += n;
      len -= static_cast<std::size_t>(n);
    }
  }
};

inline Random& Random::system() {
  static SystemRandom instance;
  return instance;
}

/// A seeded generator (mt19937_64) for simulations and tests: the same seed
/// gives the same bytes. Never for keys or tokens that face a network.
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(std::uint64_t seed) : gen_(seed) {}
  void fill(std::uint8_t* dest, std::size_t len) override {
    for (std::size_t i = 0; i < len; ++i) dest[i] = static_cast<std::uint8_t>(gen_() >> 56);
  }

 private:
  std::mt19937_64 gen_;
};

}  // namespace quiclab
