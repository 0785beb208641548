// The data representations of wire.hpp: integers, variable byte integers, strings.
#include "gateway/mqtt/codec/wire.hpp"

#include <gtest/gtest.h>

#include <string>

#include "gateway/mqtt/codec/codec_test_util.hpp"
#include "gateway/mqtt/codec/reason_codes.hpp"

namespace converge::mqtt::wire {
namespace {

using test::bin;

std::string varint_bytes(uint32_t v) {
  std::string out;
  Writer(out).varint(v);
  return out;
}

TEST(MqttWire, VarintBoundariesFromTheSpec) {
  // MQTT 5 section 1.5.5, table 1-1.
  const struct {
    uint32_t value;
    std::string bytes;
  } cases[] = {
      {0, bin({0x00})},
      {127, bin({0x7F})},
      {128, bin({0x80, 0x01})},
      {16'383, bin({0xFF, 0x7F})},
      {16'384, bin({0x80, 0x80, 0x01})},
      {2'097'151, bin({0xFF, 0xFF, 0x7F})},
      {2'097'152, bin({0x80, 0x80, 0x80, 0x01})},
      {268'435'455, bin({0xFF, 0xFF, 0xFF, 0x7F})},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(varint_bytes(c.value), c.bytes) << c.value;
    EXPECT_EQ(varint_size(c.value), c.bytes.size()) << c.value;
    Reader r(c.bytes);
    uint32_t v = 0;
    ASSERT_TRUE(r.varint(v)) << c.value;
    EXPECT_EQ(v, c.value);
    EXPECT_TRUE(r.empty());
  }
}

TEST(MqttWire, VarintRefusesFiveBytesAndNonMinimalForms) {
  for (const std::string& bad : {bin({0xFF, 0xFF, 0xFF, 0xFF, 0x01}), bin({0x80, 0x00}),
                                 bin({0xFF, 0x80, 0x00}), bin({0x80, 0x80, 0x80, 0x00})}) {
    Reader r(bad);
    uint32_t v = 0;
    EXPECT_FALSE(r.varint(v));
    EXPECT_TRUE(r.failed());
    EXPECT_EQ(r.error().reason_code, reason::malformed_packet);
  }
  // A Reader only views its bytes: they outlive it.
  const std::string truncated_bytes = bin({0x80, 0x80});
  Reader truncated(truncated_bytes);
  uint32_t v = 0;
  EXPECT_FALSE(truncated.varint(v));
  EXPECT_EQ(truncated.error().reason_code, reason::malformed_packet);
}

TEST(MqttWire, IntegersAreBigEndianAndBounded) {
  std::string out;
  Writer w(out);
  w.u8(0xAB);
  w.u16(0x1234);
  w.u32(0xDEADBEEF);
  EXPECT_EQ(out, bin({0xAB, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF}));
  Reader r(out);
  uint8_t a = 0;
  uint16_t b = 0;
  uint32_t c = 0;
  ASSERT_TRUE(r.u8(a) && r.u16(b) && r.u32(c));
  EXPECT_EQ(a, 0xAB);
  EXPECT_EQ(b, 0x1234);
  EXPECT_EQ(c, 0xDEADBEEFu);
  EXPECT_FALSE(r.u8(a));  // past the end: an error, not a read
  EXPECT_EQ(r.error().reason_code, reason::malformed_packet);

  const std::string short16_bytes = bin({0x01});
  Reader short16(short16_bytes);
  EXPECT_FALSE(short16.u16(b));
  const std::string short32_bytes = bin({0x01, 0x02, 0x03});
  Reader short32(short32_bytes);
  EXPECT_FALSE(short32.u32(c));
}

TEST(MqttWire, StringsAreLengthPrefixedAndValidated) {
  std::string out;
  Writer(out).utf8("h\xC3\xA9llo");
  EXPECT_EQ(out, bin({0x00, 0x06, "h\xC3\xA9llo"}));
  Reader r(out);
  std::string s;
  ASSERT_TRUE(r.utf8(s));
  EXPECT_EQ(s, "h\xC3\xA9llo");

  const std::string bad[] = {
      test::str(std::string("a\0b", 3)),  // U+0000
      test::str("\xC0\xAF"),              // overlong '/'
      test::str("\xED\xA0\x80"),          // a surrogate
      test::str("\xFF"),                  // not UTF-8 at all
      test::str("\xE2\x82"),              // a character cut short
      bin({0x00, 0x05, "abc"}),           // shorter than its length
      bin({0x00}),                        // half a length
  };
  for (const std::string& b : bad) {
    Reader br(b);
    std::string v;
    EXPECT_FALSE(br.utf8(v));
    EXPECT_EQ(br.error().reason_code, reason::malformed_packet);
  }
  EXPECT_FALSE(string_valid(std::string("\0", 1)));
  EXPECT_TRUE(string_valid(""));
  EXPECT_TRUE(string_valid("\xF0\x9F\x98\x80"));
}

TEST(MqttWire, BinaryDataTakesAnyBytes) {
  const std::string data("\0\xFF\xC0", 3);
  std::string out;
  Writer(out).binary(data);
  Reader r(out);
  std::string back;
  ASSERT_TRUE(r.binary(back));
  EXPECT_EQ(back, data);
  EXPECT_TRUE(r.empty());
}

TEST(MqttWire, FirstFailureIsKept) {
  const std::string r_bytes = bin({0x00, 0x01});
  Reader r(r_bytes);
  uint32_t v = 0;
  EXPECT_FALSE(r.u32(v));
  EXPECT_FALSE(r.fail(reason::protocol_error, "later"));
  EXPECT_EQ(r.error().reason_code, reason::malformed_packet);
  EXPECT_EQ(r.rest(), "");  // a failed reader yields nothing
}

TEST(MqttWire, SizerCountsWhatWriterWrites) {
  std::string out;
  Writer w(out);
  Sizer s;
  for (uint32_t v : {0u, 200u, 20'000u, 3'000'000u}) {
    w.varint(v);
    s.varint(v);
  }
  w.utf8("abc");
  s.utf8("abc");
  w.binary("");
  s.binary("");
  w.raw("xyz");
  s.raw("xyz");
  w.u8(1);
  s.u8(1);
  w.u16(1);
  s.u16(1);
  w.u32(1);
  s.u32(1);
  EXPECT_EQ(out.size(), s.size);
}

}  // namespace
}  // namespace converge::mqtt::wire
