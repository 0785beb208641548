#include "gateway/ws/frame.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace converge::ws;

namespace {

// Builds a masked client frame.
std::vector<uint8_t> client_frame(uint8_t op, std::string_view payload, bool fin = true,
                                  bool mask = true) {
  std::vector<uint8_t> f;
  f.push_back(static_cast<uint8_t>((fin ? 0x80 : 0) | op));
  uint8_t m = mask ? 0x80 : 0;
  if (payload.size() < 126) {
    f.push_back(static_cast<uint8_t>(m | payload.size()));
  } else if (payload.size() <= 0xFFFF) {
    f.push_back(m | 126);
    f.push_back(static_cast<uint8_t>(payload.size() >> 8));
    f.push_back(static_cast<uint8_t>(payload.size()));
  } else {
    f.push_back(m | 127);
    for (int i = 7; i >= 0; --i)
      f.push_back(static_cast<uint8_t>(uint64_t{payload.size()} >> (8 * i)));
  }
  const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  if (mask) f.insert(f.end(), key, key + 4);
  for (std::size_t i = 0; i < payload.size(); ++i)
    f.push_back(static_cast<uint8_t>(payload[i] ^ (mask ? key[i & 3] : 0)));
  return f;
}

struct Collect : FrameParser::Handler {
  std::vector<std::pair<Opcode, std::string>> messages;
  std::vector<std::string> pings;
  int close_code = -1;
  void on_message(Opcode op, std::string_view p) override { messages.emplace_back(op, p); }
  void on_ping(std::string_view p) override { pings.emplace_back(p); }
  void on_close(uint16_t code, std::string_view) override { close_code = code; }
};

}  // namespace

TEST(WsFrame, AcceptKeyMatchesRfc6455Example) {
  EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsFrame, EncodesTheThreeLengthForms) {
  uint8_t h[10];
  EXPECT_EQ(encode_header(h, text, 5), 2u);
  EXPECT_EQ(h[0], 0x81);
  EXPECT_EQ(h[1], 5);
  EXPECT_EQ(encode_header(h, text, 300), 4u);
  EXPECT_EQ(h[1], 126);
  EXPECT_EQ((h[2] << 8) | h[3], 300);
  EXPECT_EQ(encode_header(h, binary, 70000), 10u);
  EXPECT_EQ(h[1], 127);
  EXPECT_EQ(close_payload(1000, "bye"), std::string("\x03\xe8"
                                                    "bye",
                                                    5));
}

TEST(WsFrame, ParsesMessagesSplitAnywhere) {
  std::string big(70000, 'x');
  auto a = client_frame(text, "hello");
  auto b = client_frame(text, big);
  std::vector<uint8_t> all(a);
  all.insert(all.end(), b.begin(), b.end());
  // Feed one byte at a time, keeping what the parser leaves, like a socket would.
  FrameParser p(1 << 20);
  Collect c;
  std::vector<uint8_t> pending;
  for (uint8_t byte : all) {
    pending.push_back(byte);
    auto used = p.feed(pending.data(), pending.size(), c);
    ASSERT_FALSE(p.failed());
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(used));
  }
  ASSERT_EQ(c.messages.size(), 2u);
  EXPECT_EQ(c.messages[0].second, "hello");
  EXPECT_EQ(c.messages[1].second, big);
}

TEST(WsFrame, ReassemblesFragmentsAroundAControlFrame) {
  std::vector<uint8_t> all;
  for (auto f :
       {client_frame(text, "hel", false), client_frame(ping, "p"), client_frame(cont, "lo", true)})
    all.insert(all.end(), f.begin(), f.end());
  FrameParser p(1024);
  Collect c;
  EXPECT_EQ(p.feed(all.data(), all.size(), c), all.size());
  ASSERT_EQ(c.messages.size(), 1u);
  EXPECT_EQ(c.messages[0].second, "hello");
  ASSERT_EQ(c.pings.size(), 1u);
  EXPECT_EQ(c.pings[0], "p");
}

TEST(WsFrame, ReportsClose) {
  auto f = client_frame(Opcode::close, close_payload(4001, "x"));
  FrameParser p(1024);
  Collect c;
  p.feed(f.data(), f.size(), c);
  EXPECT_EQ(c.close_code, 4001);
}

TEST(WsFrame, RejectsProtocolViolations) {
  auto check = [](std::vector<uint8_t> f, uint16_t code) {
    FrameParser p(100);
    Collect c;
    p.feed(f.data(), f.size(), c);
    EXPECT_TRUE(p.failed());
    EXPECT_EQ(p.failure_code(), code);
    EXPECT_TRUE(c.messages.empty());
  };
  check(client_frame(text, "x", true, false), protocol_error);  // unmasked
  check(client_frame(text, std::string(101, 'x')), too_big);
  check(client_frame(cont, "x"), protocol_error);         // continuation of nothing
  check(client_frame(ping, "x", false), protocol_error);  // fragmented control
  check(client_frame(0x3, "x"), protocol_error);          // reserved opcode
  auto rsv = client_frame(text, "x");
  rsv[0] |= 0x40;
  check(rsv, protocol_error);
  std::vector<uint8_t> two;
  for (auto f : {client_frame(text, "a", false), client_frame(text, "b")})
    two.insert(two.end(), f.begin(), f.end());
  check(two, protocol_error);  // a new message inside a fragmented one
}

TEST(WsFrame, ClientSideReadsUnmaskedAndWritesMasked) {
  const uint8_t mask[4] = {1, 2, 3, 4};
  auto f = encode_client_frame(text, "hi there", mask);
  FrameParser server(100);
  Collect c;
  EXPECT_EQ(server.feed(reinterpret_cast<const uint8_t*>(f.data()), f.size(), c), f.size());
  ASSERT_EQ(c.messages.size(), 1u);
  EXPECT_EQ(c.messages[0].second, "hi there");
  uint8_t h[10];
  std::string frame(reinterpret_cast<char*>(h), encode_header(h, text, 3));
  frame += "abc";
  FrameParser client(100, FrameParser::Side::client);
  Collect d;
  client.feed(reinterpret_cast<const uint8_t*>(frame.data()), frame.size(), d);
  ASSERT_EQ(d.messages.size(), 1u);
  EXPECT_EQ(d.messages[0].second, "abc");
  FrameParser strict(100, FrameParser::Side::client);
  strict.feed(reinterpret_cast<const uint8_t*>(f.data()), f.size(), d);
  EXPECT_TRUE(strict.failed());  // a masked frame from a "server"
}

// The unmasking works eight bytes at a time from any payload offset: every length, split at
// every point, comes out as sent.
TEST(WsFrame, UnmasksAnyLengthSplitAnywhere) {
  for (std::size_t len = 0; len < 40; ++len) {
    std::string payload;
    for (std::size_t i = 0; i < len; ++i) payload += static_cast<char>('a' + (i * 7) % 26);
    auto f = client_frame(binary, payload);
    for (std::size_t cut = 0; cut <= f.size(); ++cut) {
      FrameParser p(1024);
      Collect c;
      std::vector<uint8_t> pending(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(cut));
      auto used = p.feed(pending.data(), pending.size(), c);
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(used));
      pending.insert(pending.end(), f.begin() + static_cast<std::ptrdiff_t>(cut), f.end());
      p.feed(pending.data(), pending.size(), c);
      ASSERT_FALSE(p.failed());
      ASSERT_EQ(c.messages.size(), 1u) << len << " " << cut;
      EXPECT_EQ(c.messages[0].second, payload) << len << " " << cut;
    }
  }
}

// A client hands over whole frames where they lie in its read buffer; frames split across reads
// and fragmented messages are assembled as before, in order with the whole ones.
TEST(WsFrame, ClientReadsWholeAndSplitFramesAlike) {
  std::vector<uint8_t> all;
  for (auto f : {client_frame(text, "one", true, false), client_frame(text, "tw", false, false),
                 client_frame(cont, "o", true, false), client_frame(text, "three", true, false),
                 client_frame(binary, std::string(300, 'f'), true, false)})
    all.insert(all.end(), f.begin(), f.end());
  for (std::size_t cut = 0; cut <= all.size(); ++cut) {
    FrameParser p(1024, FrameParser::Side::client);
    Collect c;
    std::vector<uint8_t> pending(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(cut));
    auto used = p.feed(pending.data(), pending.size(), c);
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(used));
    pending.insert(pending.end(), all.begin() + static_cast<std::ptrdiff_t>(cut), all.end());
    EXPECT_EQ(p.feed(pending.data(), pending.size(), c), pending.size());
    ASSERT_FALSE(p.failed());
    ASSERT_EQ(c.messages.size(), 4u) << cut;
    EXPECT_EQ(c.messages[0].second, "one");
    EXPECT_EQ(c.messages[1].second, "two");
    EXPECT_EQ(c.messages[2].second, "three");
    EXPECT_EQ(c.messages[3].first, binary);
    EXPECT_EQ(c.messages[3].second, std::string(300, 'f'));
  }
}
