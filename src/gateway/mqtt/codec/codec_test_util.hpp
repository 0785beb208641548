#pragma once
// Helpers shared by the codec's tests.
#include <gtest/gtest.h>

#include <initializer_list>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/mqtt/codec/codec.hpp"

namespace converge::mqtt::test {

// Bytes from a list of byte values and strings, e.g. bin({0x10, 0x02}, "MQTT").
struct Part {
  Part(int byte) : s(1, static_cast<char>(byte)) {}  // NOLINT(google-explicit-constructor)
  Part(const char* text) : s(text) {}                // NOLINT(google-explicit-constructor)
  Part(std::string text) : s(std::move(text)) {}     // NOLINT(google-explicit-constructor)
  std::string s;
};
inline std::string bin(std::initializer_list<Part> parts) {
  std::string out;
  for (const Part& p : parts) out += p.s;
  return out;
}

// A length-prefixed MQTT string.
inline std::string str(std::string_view s) {
  std::string out;
  out.push_back(static_cast<char>(s.size() >> 8));
  out.push_back(static_cast<char>(s.size() & 0xFF));
  out.append(s);
  return out;
}

// A packet from its first byte and body (the remaining length computed, minimal encoding).
inline std::string packet(uint8_t first, std::string_view body) {
  std::string out(1, static_cast<char>(first));
  std::size_t n = body.size();
  do {
    auto b = static_cast<uint8_t>(n & 0x7F);
    n >>= 7;
    if (n) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (n);
  out.append(body);
  return out;
}

inline Connect connect_packet(Version v) {
  Connect c;
  c.version = v;
  c.client_id = "dev-1";
  c.keep_alive = 30;
  return c;
}

// A server's decoder that has decoded a CONNECT of version `v`.
inline Decoder connected_server(Version v, std::size_t max_packet_size = kMaxPacketBytes) {
  Decoder d = Decoder::for_server(max_packet_size);
  std::string bytes;
  encode(bytes, connect_packet(v));
  d.feed(bytes);
  auto p = d.next();
  EXPECT_TRUE(p && std::holds_alternative<Connect>(*p));
  EXPECT_EQ(d.version(), v);
  return d;
}

// Every packet `d` yields for `bytes`, fed at once.
inline std::vector<Packet> drain(Decoder& d, std::string_view bytes) {
  d.feed(bytes);
  std::vector<Packet> out;
  while (auto p = d.next()) out.push_back(std::move(*p));
  return out;
}

// The error a decoder reports for `bytes`; the test fails if it yields a packet instead.
inline DecodeError error_of(Decoder d, std::string_view bytes) {
  const std::vector<Packet> got = drain(d, bytes);
  EXPECT_TRUE(got.empty()) << "decoded " << got.size() << " packet(s)";
  EXPECT_TRUE(d.failed());
  EXPECT_FALSE(d.next());  // nothing after a failure
  EXPECT_EQ(d.buffered_bytes(), 0u);
  return d.error();
}

// The error for a packet a client sends after a CONNECT of version `v`.
inline uint8_t client_error(Version v, std::string_view bytes) {
  return error_of(connected_server(v), bytes).reason_code;
}

// The error for a packet a server sends to a client of version `v`.
inline uint8_t server_error(Version v, std::string_view bytes) {
  return error_of(Decoder::for_client(v), bytes).reason_code;
}

}  // namespace converge::mqtt::test

namespace converge::mqtt {

// Failures print a packet as its MQTT 5 encoding in hex (a CONNECT in its own version).
inline void PrintTo(const Packet& p, std::ostream* os) {
  static const char* const kNames[] = {"?",         "CONNECT",  "CONNACK",     "PUBLISH",
                                       "PUBACK",    "PUBREC",   "PUBREL",      "PUBCOMP",
                                       "SUBSCRIBE", "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
                                       "PINGREQ",   "PINGRESP", "DISCONNECT",  "AUTH"};
  *os << kNames[static_cast<int>(packet_type(p))];
  static const char kHex[] = "0123456789abcdef";
  for (char c : encode(p, Version::v5)) {
    const auto b = static_cast<uint8_t>(c);
    *os << ' ' << kHex[b >> 4] << kHex[b & 15];
  }
}
#define CONVERGE_MQTT_PRINT(T)                        \
  inline void PrintTo(const T& p, std::ostream* os) { \
    PrintTo(Packet{p}, os);                           \
  }
CONVERGE_MQTT_PRINT(Connect)
CONVERGE_MQTT_PRINT(Connack)
CONVERGE_MQTT_PRINT(Publish)
CONVERGE_MQTT_PRINT(Ack)
CONVERGE_MQTT_PRINT(Subscribe)
CONVERGE_MQTT_PRINT(Suback)
CONVERGE_MQTT_PRINT(Unsubscribe)
CONVERGE_MQTT_PRINT(Unsuback)
CONVERGE_MQTT_PRINT(Pingreq)
CONVERGE_MQTT_PRINT(Pingresp)
CONVERGE_MQTT_PRINT(Disconnect)
CONVERGE_MQTT_PRINT(Auth)
#undef CONVERGE_MQTT_PRINT

}  // namespace converge::mqtt
