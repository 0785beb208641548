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

// RFC 4231 test cases 2 (a short key) and 6 (a key longer than SHA-256's block, hashed first).
TEST_F(Crypto, HmacSha256KnownAnswers) {
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(hmac_sha256_hex(std::string(131, '\xaa'),
                            "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST_F(Crypto, PasswordHashIsArgon2idAndVerifies) {
  auto h = password_hash("correct horse", password_cost_min());
  ASSERT_FALSE(h.empty());
  EXPECT_EQ(h.rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(password_verify(h, "correct horse"));
  EXPECT_FALSE(password_verify(h, "correct horsf"));
  EXPECT_FALSE(password_verify("not a hash", "x"));
}
