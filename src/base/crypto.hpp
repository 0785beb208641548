#pragma once
// Thin wrappers over libsodium: random tokens, token digests, argon2id password hashes.
#include <cstddef>
#include <string>
#include <string_view>

namespace converge {

// Must be called once before any other function here (sodium_init).
bool crypto_init();

// `bytes` random bytes, hex-encoded.
std::string random_hex(std::size_t bytes);

// SHA-256 of `data`, hex-encoded. Tokens are stored as this digest, never in clear.
std::string sha256_hex(std::string_view data);

struct PasswordHashCost {
  unsigned long long opslimit;  // argon2id passes
  std::size_t memlimit_bytes;   // argon2id memory
};
PasswordHashCost password_cost_interactive();
PasswordHashCost password_cost_min();  // for tests and benchmarks only

// HMAC-SHA256 of `data` under `key` (any length), hex-encoded: the push webhook's signature
// (service/push.hpp).
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

// argon2id in libsodium's self-describing string form; empty on failure (out of memory).
std::string password_hash(std::string_view password, PasswordHashCost cost);
bool password_verify(std::string_view hash, std::string_view password);

// Incremental SHA-256, for content-addressed file storage.
class Sha256 {
 public:
  Sha256();
  void update(std::string_view data);
  std::string final_hex();

 private:
  alignas(16) unsigned char state_[128];
};

}  // namespace converge
