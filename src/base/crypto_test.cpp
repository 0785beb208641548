#include <gtest/gtest.h>

#include "base/crypto.hpp"

using namespace converge;

class Crypto : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(crypto_init()); }
};

TEST_F(Crypto, RandomHexIsRandomAndSized) {
  auto a = random_hex(32), b = random_hex(32);
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, b);
}

TEST_F(Crypto, Sha256KnownAnswer) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.update("a");
  h.update("bc");
  EXPECT_EQ(h.final_hex(), sha256_hex("abc"));
}

TEST_F(Crypto, PasswordHashIsArgon2idAndVerifies) {
  auto h = password_hash("correct horse", password_cost_min());
  ASSERT_FALSE(h.empty());
  EXPECT_EQ(h.rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(password_verify(h, "correct horse"));
  EXPECT_FALSE(password_verify(h, "correct horsf"));
  EXPECT_FALSE(password_verify("not a hash", "x"));
}
