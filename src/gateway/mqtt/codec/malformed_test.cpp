// Every way a packet can be refused, each with its reason code; a refused packet is never
// yielded, and the decoder yields nothing after it.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "gateway/mqtt/codec/codec.hpp"
#include "gateway/mqtt/codec/codec_test_util.hpp"

namespace converge::mqtt {
namespace {

using test::bin;
using test::client_error;
using test::connected_server;
using test::drain;
using test::error_of;
using test::packet;
using test::server_error;
using test::str;

constexpr Version v5 = Version::v5;
constexpr Version v311 = Version::v311;

// A v5 PUBLISH QoS 0 to "t" with the given property block content.
std::string publish_with_props(std::string_view props) {
  return packet(0x30, bin({str("t"), static_cast<int>(props.size()), std::string(props), "x"}));
}

// A CONNECT body: protocol name and level, flags, keep alive, then `rest`.
std::string connect_bytes(std::string_view name, int level, int flags, std::string_view rest) {
  return packet(0x10, bin({str(name), level, flags, 0x00, 0x3C, std::string(rest)}));
}

uint8_t connect_error(std::string_view bytes) {
  return error_of(Decoder::for_server(), bytes).reason_code;
}

TEST(MqttMalformed, RemainingLengthOverFourBytes) {
  EXPECT_EQ(client_error(v5, bin({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01})), reason::malformed_packet);
  // Refused when the fifth length byte is missing too: four continuation bits say it all.
  EXPECT_EQ(client_error(v311, bin({0x30, 0x80, 0x80, 0x80, 0x80})), reason::malformed_packet);
}

TEST(MqttMalformed, NonMinimalRemainingLength) {
  EXPECT_EQ(client_error(v5, bin({0xC0, 0x80, 0x00})), reason::malformed_packet);
  EXPECT_EQ(client_error(v311, bin({0x30, 0x85, 0x80, 0x00})), reason::malformed_packet);
}

TEST(MqttMalformed, OversizePacketRefusedFromItsHeaderAlone) {
  // Only the fixed header arrives: 268,435,455 bytes announced, none of them buffered.
  Decoder d = connected_server(v5, 1024);
  d.feed(bin({0x30, 0xFF, 0xFF, 0xFF, 0x7F}));
  EXPECT_FALSE(d.next());
  ASSERT_TRUE(d.failed());
  EXPECT_EQ(d.error().reason_code, reason::packet_too_large);
  EXPECT_EQ(d.buffered_bytes(), 0u);
  d.feed("more");
  EXPECT_FALSE(d.next());
  EXPECT_EQ(d.buffered_bytes(), 0u);

  // A CONNECT counts too.
  Decoder first = Decoder::for_server(16);
  first.feed(bin({0x10, 0x80, 0x01}));
  EXPECT_FALSE(first.next());
  EXPECT_EQ(first.error().reason_code, reason::packet_too_large);
}

TEST(MqttMalformed, TruncatedFields) {
  // A topic length of 10 with 3 bytes behind it.
  EXPECT_EQ(client_error(v5, packet(0x30, bin({0x00, 0x0A, "abc"}))), reason::malformed_packet);
  // QoS 1 without its packet identifier.
  EXPECT_EQ(client_error(v311, packet(0x32, str("t"))), reason::malformed_packet);
  // A PUBACK with one byte of identifier.
  EXPECT_EQ(client_error(v311, packet(0x40, bin({0x01}))), reason::malformed_packet);
  // v5 PUBLISH without its property length.
  EXPECT_EQ(client_error(v5, packet(0x30, str("t"))), reason::malformed_packet);
}

TEST(MqttMalformed, TopicNotUtf8OrWithNul) {
  for (Version v : {v311, v5}) {
    for (std::string bad : {std::string("a\0b", 3), std::string("\xC0\xAF"),
                            std::string("\xED\xA0\x80"), std::string("a\xFF")}) {
      const std::string body = bin({str(bad), v == v5 ? bin({0x00}) : std::string()});
      EXPECT_EQ(client_error(v, packet(0x30, body)), reason::malformed_packet);
    }
  }
  // In a subscription filter and in a user property too.
  EXPECT_EQ(client_error(v311, packet(0x82, bin({0x00, 0x01, str("\xFF"), 0x00}))),
            reason::malformed_packet);
  EXPECT_EQ(client_error(v5, publish_with_props(bin({0x26, str("k"), str("\xC3")}))),
            reason::malformed_packet);
}

TEST(MqttMalformed, WildcardInPublishTopic) {
  for (const char* topic : {"a/+", "a/#", "+", "#", "a+b"}) {
    EXPECT_EQ(client_error(v5, packet(0x30, bin({str(topic), 0x00}))), reason::topic_name_invalid);
    EXPECT_EQ(client_error(v311, packet(0x30, str(topic))), reason::topic_name_invalid);
  }
}

TEST(MqttMalformed, EmptyPublishTopic) {
  EXPECT_EQ(client_error(v311, packet(0x30, bin({str(""), "x"}))), reason::protocol_error);
  EXPECT_EQ(client_error(v5, packet(0x30, bin({str(""), 0x00, "x"}))), reason::protocol_error);
}

TEST(MqttMalformed, PublishFixedHeaderFlags) {
  EXPECT_EQ(client_error(v5, packet(0x36, bin({str("t"), 0x00, 0x01, 0x00}))),
            reason::malformed_packet);                                              // QoS 3
  EXPECT_EQ(client_error(v311, packet(0x38, str("t"))), reason::malformed_packet);  // DUP at QoS 0
  // Refused from the first byte, before the rest arrives.
  Decoder d = connected_server(v5);
  d.feed(bin({0x37}));
  EXPECT_FALSE(d.next());
  EXPECT_EQ(d.error().reason_code, reason::malformed_packet);
}

TEST(MqttMalformed, ReservedFixedHeaderFlags) {
  const std::string id = bin({0x00, 0x01});
  EXPECT_EQ(client_error(v311, packet(0x60, id)), reason::malformed_packet);  // PUBREL not 0010
  EXPECT_EQ(client_error(v311, packet(0x63, id)), reason::malformed_packet);
  EXPECT_EQ(client_error(v5, packet(0x41, id)), reason::malformed_packet);  // PUBACK
  EXPECT_EQ(client_error(v5, packet(0x52, id)), reason::malformed_packet);  // PUBREC
  EXPECT_EQ(client_error(v5, packet(0x72, id)), reason::malformed_packet);  // PUBCOMP
  EXPECT_EQ(client_error(v311, packet(0x80, bin({id, str("a"), 0x00}))),
            reason::malformed_packet);  // SUBSCRIBE not 0010
  EXPECT_EQ(client_error(v311, packet(0xA0, bin({id, str("a")}))),
            reason::malformed_packet);                                       // UNSUBSCRIBE not 0010
  EXPECT_EQ(client_error(v5, bin({0xC1, 0x00})), reason::malformed_packet);  // PINGREQ
  EXPECT_EQ(client_error(v5, bin({0xE8, 0x00})), reason::malformed_packet);  // DISCONNECT
  EXPECT_EQ(client_error(v5, bin({0xF1, 0x00})), reason::malformed_packet);  // AUTH
  EXPECT_EQ(server_error(v5, bin({0x21, 0x03, 0x00, 0x00, 0x00})), reason::malformed_packet);
  EXPECT_EQ(connect_error(bin({0x11, 0x00})), reason::malformed_packet);  // CONNECT
}

TEST(MqttMalformed, PacketIdentifierZero) {
  EXPECT_EQ(client_error(v5, packet(0x32, bin({str("t"), 0x00, 0x00, 0x00}))),
            reason::protocol_error);
  EXPECT_EQ(client_error(v311, packet(0x34, bin({str("t"), 0x00, 0x00}))), reason::protocol_error);
  EXPECT_EQ(client_error(v311, packet(0x82, bin({0x00, 0x00, str("a"), 0x00}))),
            reason::protocol_error);
  EXPECT_EQ(client_error(v5, packet(0xA2, bin({0x00, 0x00, 0x00, str("a")}))),
            reason::protocol_error);
  EXPECT_EQ(client_error(v311, packet(0x40, bin({0x00, 0x00}))), reason::protocol_error);
  EXPECT_EQ(server_error(v311, packet(0x90, bin({0x00, 0x00, 0x00}))), reason::protocol_error);
}

TEST(MqttMalformed, DuplicateProperty) {
  const std::string expiry = bin({0x02, 0x00, 0x00, 0x00, 0x10});
  EXPECT_EQ(client_error(v5, publish_with_props(expiry + expiry)), reason::protocol_error);
  const std::string type = bin({0x03, str("a")});
  EXPECT_EQ(client_error(v5, publish_with_props(type + type)), reason::protocol_error);
  EXPECT_EQ(client_error(v5, publish_with_props(bin({0x23, 0x00, 0x01, 0x23, 0x00, 0x02}))),
            reason::protocol_error);
  // A SUBSCRIBE carries one subscription identifier (a PUBLISH to a client, several).
  EXPECT_EQ(client_error(
                v5, packet(0x82, bin({0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, str("a"), 0x00}))),
            reason::protocol_error);
  // User properties may repeat, also with the same key.
  Decoder d = connected_server(v5);
  const std::string user = bin({0x26, str("k"), str("v")});
  EXPECT_EQ(drain(d, publish_with_props(user + user)).size(), 1u);
  EXPECT_FALSE(d.failed());
}

TEST(MqttMalformed, PropertyNotAllowedOnThePacket) {
  // Session expiry interval on a PUBLISH, topic alias on a CONNECT, session expiry in a will,
  // topic alias on a SUBSCRIBE, reason string on a PUBLISH, will delay on a CONNECT.
  EXPECT_EQ(client_error(v5, publish_with_props(bin({0x11, 0x00, 0x00, 0x00, 0x01}))),
            reason::protocol_error);
  EXPECT_EQ(client_error(v5, publish_with_props(bin({0x1F, str("why")}))), reason::protocol_error);
  EXPECT_EQ(connect_error(connect_bytes("MQTT", 5, 0x02, bin({0x03, 0x23, 0x00, 0x01, str("c")}))),
            reason::protocol_error);
  EXPECT_EQ(connect_error(connect_bytes("MQTT", 5, 0x02,
                                        bin({0x05, 0x18, 0x00, 0x00, 0x00, 0x01, str("c")}))),
            reason::protocol_error);
  EXPECT_EQ(connect_error(connect_bytes(
                "MQTT", 5, 0x06,
                bin({0x00, str("c"), 0x05, 0x11, 0x00, 0x00, 0x00, 0x01, str("w"), str("x")}))),
            reason::protocol_error);
  EXPECT_EQ(
      client_error(v5, packet(0x82, bin({0x00, 0x01, 0x03, 0x23, 0x00, 0x01, str("a"), 0x00}))),
      reason::protocol_error);
  EXPECT_EQ(client_error(v5, packet(0x40, bin({0x00, 0x01, 0x00, 0x02, 0x01, 0x00}))),
            reason::protocol_error);  // payload format indicator on a PUBACK
  EXPECT_EQ(server_error(v5, packet(0x20, bin({0x00, 0x00, 0x02, 0x23, 0x00}))),
            reason::protocol_error);  // topic alias on a CONNACK (truncated, but refused first)
}

TEST(MqttMalformed, UnknownPropertyIdentifier) {
  for (int id : {0x00, 0x04, 0x05, 0x10, 0x14, 0x1B, 0x2B, 0x7F}) {
    EXPECT_EQ(client_error(v5, publish_with_props(bin({id, 0x00}))), reason::malformed_packet)
        << id;
  }
}

TEST(MqttMalformed, PropertyValuesOutOfRange) {
  EXPECT_EQ(client_error(v5, publish_with_props(bin({0x01, 0x02}))), reason::protocol_error);
  EXPECT_EQ(client_error(v5, publish_with_props(bin({0x23, 0x00, 0x00}))),
            reason::topic_alias_invalid);
  EXPECT_EQ(client_error(v5, publish_with_props(bin({0x08, str("reply/+")}))),
            reason::protocol_error);  // a wildcard in the response topic
  EXPECT_EQ(connect_error(connect_bytes("MQTT", 5, 0x02, bin({0x03, 0x21, 0x00, 0x00, str("c")}))),
            reason::protocol_error);  // receive maximum 0
  EXPECT_EQ(connect_error(connect_bytes("MQTT", 5, 0x02,
                                        bin({0x05, 0x27, 0x00, 0x00, 0x00, 0x00, str("c")}))),
            reason::protocol_error);  // maximum packet size 0
  EXPECT_EQ(connect_error(connect_bytes("MQTT", 5, 0x02, bin({0x02, 0x17, 0x02, str("c")}))),
            reason::protocol_error);  // request problem information 2
  EXPECT_EQ(client_error(v5, packet(0x82, bin({0x00, 0x01, 0x02, 0x0B, 0x00, str("a"), 0x00}))),
            reason::protocol_error);  // subscription identifier 0
  EXPECT_EQ(server_error(v5, packet(0x20, bin({0x00, 0x00, 0x02, 0x24, 0x02}))),
            reason::protocol_error);  // maximum QoS 2
  EXPECT_EQ(server_error(v5, packet(0x20, bin({0x00, 0x00, 0x02, 0x25, 0x07}))),
            reason::protocol_error);  // retain available 7
}

TEST(MqttMalformed, PropertyBlockBounds) {
  // Length beyond the packet; a value cut by the block's end; a non-minimal block length.
  EXPECT_EQ(client_error(v5, packet(0x30, bin({str("t"), 0x09, 0x01, 0x01}))),
            reason::malformed_packet);
  EXPECT_EQ(client_error(v5, publish_with_props(bin({0x02, 0x00, 0x00}))),
            reason::malformed_packet);
  EXPECT_EQ(client_error(v5, packet(0x30, bin({str("t"), 0x80, 0x00}))), reason::malformed_packet);
  EXPECT_EQ(client_error(v5, publish_with_props(bin({0x0B, 0x80, 0x00}))),
            reason::malformed_packet);  // non-minimal varint value
}

TEST(MqttMalformed, SubscriptionIdentifierFromAClient) {
  EXPECT_EQ(client_error(v5, publish_with_props(bin({0x0B, 0x05}))), reason::protocol_error);
}

TEST(MqttMalformed, FirstPacketNotConnect) {
  EXPECT_EQ(connect_error(bin({0xC0, 0x00})), reason::protocol_error);
  EXPECT_EQ(connect_error(packet(0x30, bin({str("t"), "x"}))), reason::protocol_error);
  EXPECT_EQ(connect_error(bin({0xF0, 0x00})), reason::protocol_error);  // AUTH before CONNECT
  EXPECT_EQ(connect_error(bin({0xE0})), reason::protocol_error);        // known from one byte
}

TEST(MqttMalformed, SecondConnect) {
  // MQTT-3.1.0-2: the codec refuses it, whatever the broker would have done with it.
  std::string bytes;
  encode(bytes, test::connect_packet(v5));
  EXPECT_EQ(client_error(v5, bytes), reason::protocol_error);
}

TEST(MqttMalformed, PacketsInTheWrongDirection) {
  for (const std::string& server_only :
       {bin({0x20, 0x02, 0x00, 0x00}), bin({0x90, 0x03, 0x00, 0x01, 0x00}),
        bin({0xB0, 0x02, 0x00, 0x01}), bin({0xD0, 0x00})}) {
    EXPECT_EQ(client_error(v311, server_only), reason::protocol_error);
  }
  std::string conn;
  encode(conn, test::connect_packet(v5));
  for (const std::string& client_only :
       {conn, bin({0x82, 0x06, 0x00, 0x01, 0x00, 0x01, "a", 0x00}),
        bin({0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, "a"}), bin({0xC0, 0x00})}) {
    EXPECT_EQ(server_error(v311, client_only), reason::protocol_error);
  }
}

TEST(MqttMalformed, SubscribeAndUnsubscribeWithoutFilters) {
  EXPECT_EQ(client_error(v311, packet(0x82, bin({0x00, 0x01}))), reason::protocol_error);
  EXPECT_EQ(client_error(v5, packet(0x82, bin({0x00, 0x01, 0x00}))), reason::protocol_error);
  EXPECT_EQ(client_error(v311, packet(0xA2, bin({0x00, 0x01}))), reason::protocol_error);
  EXPECT_EQ(client_error(v5, packet(0xA2, bin({0x00, 0x01, 0x00}))), reason::protocol_error);
  // A filter without its options byte.
  EXPECT_EQ(client_error(v311, packet(0x82, bin({0x00, 0x01, str("a")}))),
            reason::malformed_packet);
}

TEST(MqttMalformed, SubscriptionOptions) {
  auto sub = [](int options) { return packet(0x82, bin({0x00, 0x01, str("a/b"), options})); };
  auto sub5 = [](int options) {
    return packet(0x82, bin({0x00, 0x01, 0x00, str("a/b"), options}));
  };
  // 3.1.1: everything but the QoS bits is reserved.
  for (int bad : {0x04, 0x08, 0x10, 0x40, 0x80}) {
    EXPECT_EQ(client_error(v311, sub(bad)), reason::malformed_packet) << bad;
  }
  EXPECT_EQ(client_error(v311, sub(0x03)), reason::malformed_packet);  // QoS 3
  // 5: bits 6 and 7 reserved, QoS 3 malformed, retain handling 3 a protocol error.
  EXPECT_EQ(client_error(v5, sub5(0x40)), reason::malformed_packet);
  EXPECT_EQ(client_error(v5, sub5(0x80)), reason::malformed_packet);
  EXPECT_EQ(client_error(v5, sub5(0x03)), reason::malformed_packet);
  EXPECT_EQ(client_error(v5, sub5(0x30)), reason::protocol_error);
  // Every legal v5 option byte passes.
  Decoder d = connected_server(v5);
  EXPECT_EQ(drain(d, sub5(0x2E)).size(), 1u);
  EXPECT_FALSE(d.failed());
}

TEST(MqttMalformed, ReservedPacketTypes) {
  EXPECT_EQ(connect_error(bin({0x00, 0x00})), reason::malformed_packet);
  EXPECT_EQ(client_error(v5, bin({0x00, 0x00})), reason::malformed_packet);
  EXPECT_EQ(server_error(v311, bin({0x00, 0x00})), reason::malformed_packet);
  // AUTH (15) is reserved in 3.1.1, from either side.
  EXPECT_EQ(client_error(v311, bin({0xF0, 0x00})), reason::malformed_packet);
  EXPECT_EQ(server_error(v311, bin({0xF0, 0x00})), reason::malformed_packet);
}

TEST(MqttMalformed, ConnectProtocolNameAndLevel) {
  // MQTT 3.1: answered CONNACK 0x01 in 3.1.1 style, as version() is unknown.
  Decoder d = Decoder::for_server();
  const DecodeError e = error_of(d, connect_bytes("MQIsdp", 3, 0x02, str("c")));
  EXPECT_EQ(e.reason_code, reason::unsupported_protocol_version);
  EXPECT_EQ(connack_v311_return_code(e.reason_code), connack_v311::unacceptable_protocol_version);
  EXPECT_EQ(connect_error(connect_bytes("MQTT", 3, 0x02, str("c"))),
            reason::unsupported_protocol_version);
  EXPECT_EQ(connect_error(connect_bytes("MQTT", 6, 0x02, str("c"))),
            reason::unsupported_protocol_version);
  EXPECT_EQ(connect_error(connect_bytes("MQTX", 4, 0x02, str("c"))),
            reason::unsupported_protocol_version);
  EXPECT_EQ(connect_error(packet(0x10, bin({0x00, 0x04, "MQ"}))), reason::malformed_packet);

  Decoder unknown = Decoder::for_server();
  unknown.feed(connect_bytes("MQTT", 6, 0x02, str("c")));
  EXPECT_FALSE(unknown.next());
  EXPECT_EQ(unknown.version(), std::nullopt);
}

TEST(MqttMalformed, ConnectFlags) {
  for (int level : {4, 5}) {
    SCOPED_TRACE(level);
    const std::string props = level == 5 ? bin({0x00}) : "";
    const std::string will_props = props;
    auto conn = [&](int flags, std::string payload) {
      return connect_bytes("MQTT", level, flags, props + payload);
    };
    EXPECT_EQ(connect_error(conn(0x03, str("c"))), reason::malformed_packet);  // reserved bit
    EXPECT_EQ(connect_error(conn(0x0A, str("c"))), reason::malformed_packet);  // will QoS, no will
    EXPECT_EQ(connect_error(conn(0x22, str("c"))), reason::malformed_packet);  // will retain
    EXPECT_EQ(connect_error(conn(0x1E, str("c") + will_props + str("w") + str("x"))),
              reason::malformed_packet);  // will QoS 3
    EXPECT_EQ(connect_error(conn(0x06, str("c") + will_props + str("a/#") + str("x"))),
              reason::topic_name_invalid);
    EXPECT_EQ(connect_error(conn(0x06, str("c") + will_props + str("") + str("x"))),
              reason::topic_name_invalid);
    EXPECT_EQ(connect_error(conn(0x82, str("c") + str("u") + "trailing")),
              reason::malformed_packet);
    EXPECT_EQ(connect_error(conn(0xC2, str("c") + str("u"))),
              reason::malformed_packet);  // password flag, no password
  }
  // Password without user name: a protocol error in 3.1.1, allowed in 5.
  EXPECT_EQ(connect_error(connect_bytes("MQTT", 4, 0x42, str("c") + str("p"))),
            reason::protocol_error);
  Decoder d = Decoder::for_server();
  EXPECT_EQ(drain(d, connect_bytes("MQTT", 5, 0x42, bin({0x00, str("c"), str("p")}))).size(), 1u);
  EXPECT_FALSE(d.failed());
}

TEST(MqttMalformed, ConnectErrorAfterTheLevelKeepsTheVersion) {
  // So that the server can answer a v5 client with a v5 CONNACK carrying the reason code.
  Decoder d = Decoder::for_server();
  d.feed(connect_bytes("MQTT", 5, 0x03, bin({0x00, str("c")})));
  EXPECT_FALSE(d.next());
  EXPECT_EQ(d.error().reason_code, reason::malformed_packet);
  EXPECT_EQ(d.version(), Version::v5);
}

TEST(MqttMalformed, ConnectAuthenticationDataWithoutMethod) {
  EXPECT_EQ(connect_error(connect_bytes("MQTT", 5, 0x02, bin({0x05, 0x16, str("xy"), str("c")}))),
            reason::protocol_error);
}

TEST(MqttMalformed, TrailingBytes) {
  EXPECT_EQ(client_error(v311, packet(0x40, bin({0x00, 0x01, 0x00}))), reason::malformed_packet);
  EXPECT_EQ(client_error(v5, packet(0x40, bin({0x00, 0x01, 0x00, 0x00, 0x00}))),
            reason::malformed_packet);
  EXPECT_EQ(client_error(v5, bin({0xC0, 0x01, 0x00})), reason::malformed_packet);  // PINGREQ
  EXPECT_EQ(client_error(v311, bin({0xE0, 0x01, 0x00})), reason::malformed_packet);
  EXPECT_EQ(client_error(v5, bin({0xE0, 0x03, 0x00, 0x00, 0x00})), reason::malformed_packet);
  EXPECT_EQ(client_error(v5, bin({0xF0, 0x03, 0x18, 0x00, 0x00})), reason::malformed_packet);
  EXPECT_EQ(server_error(v311, packet(0xB0, bin({0x00, 0x01, 0x00}))),
            reason::malformed_packet);  // 3.1.1 UNSUBACK has no payload
  EXPECT_EQ(server_error(v311, bin({0x20, 0x03, 0x00, 0x00, 0x00})), reason::malformed_packet);
  EXPECT_EQ(server_error(v311, bin({0xD0, 0x01, 0x00})), reason::malformed_packet);
}

TEST(MqttMalformed, ServerPacketsFields) {
  EXPECT_EQ(server_error(v311, bin({0x20, 0x02, 0x02, 0x00})), reason::malformed_packet);
  EXPECT_EQ(server_error(v311, bin({0x20, 0x02, 0x00, 0x06})), reason::protocol_error);
  EXPECT_EQ(server_error(v311, bin({0x20, 0x02, 0x01, 0x05})), reason::protocol_error);
  EXPECT_EQ(server_error(v5, bin({0x20, 0x03, 0x01, 0x87, 0x00})), reason::protocol_error);
  EXPECT_EQ(server_error(v5, bin({0x20, 0x02, 0x00, 0x00})), reason::malformed_packet);
  EXPECT_EQ(server_error(v311, bin({0x90, 0x03, 0x00, 0x01, 0x03})), reason::protocol_error);
  EXPECT_EQ(server_error(v311, bin({0x90, 0x02, 0x00, 0x01})), reason::protocol_error);
  EXPECT_EQ(server_error(v5, bin({0xB0, 0x03, 0x00, 0x01, 0x00})), reason::protocol_error);
}

TEST(MqttMalformed, GoodPacketsBeforeTheBadOneAreDelivered) {
  Decoder d = connected_server(v311);
  const std::string bytes = bin({0xC0, 0x00, 0xC0, 0x00, 0xC1, 0x00, 0xC0, 0x00});
  const auto got = drain(d, bytes);
  EXPECT_EQ(got.size(), 2u);
  EXPECT_TRUE(d.failed());
  EXPECT_EQ(d.error().reason_code, reason::malformed_packet);
  EXPECT_FALSE(d.error().message.empty());
  d.feed(bin({0xC0, 0x00}));
  EXPECT_FALSE(d.next());  // closed for good
}

// Whatever the bytes, the decoder yields packets or one error, never reads out of bounds (run
// under the sanitizers), and what it yields encodes back to bytes that decode to the same packet.
void check_any_bytes(Version v, std::string_view bytes) {
  Decoder d = connected_server(v, 4096);
  const std::vector<Packet> got = drain(d, bytes);
  for (const Packet& p : got) {
    Decoder again = connected_server(v, 1 << 20);
    const std::vector<Packet> back = drain(again, encode(p, v));
    EXPECT_FALSE(again.failed()) << again.error().message;
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0], p);
  }
  if (d.failed()) {
    EXPECT_FALSE(d.error().message.empty());
    EXPECT_EQ(d.buffered_bytes(), 0u);
  }
}

TEST(MqttMalformed, RandomBytes) {
  std::mt19937 rng(7);
  for (Version v : {v311, v5}) {
    for (int i = 0; i < 3000; ++i) {
      std::string bytes(rng() % 40, '\0');
      for (char& c : bytes) c = static_cast<char>(rng());
      // Often a plausible first byte, so that bodies are exercised rather than the type check.
      static const uint8_t kFirst[] = {0x30, 0x32, 0x35, 0x40, 0x50, 0x62,
                                       0x70, 0x82, 0xA2, 0xC0, 0xE0, 0xF0};
      if (!bytes.empty() && rng() % 4 != 0) bytes[0] = static_cast<char>(kFirst[rng() % 12]);
      if (bytes.size() > 1 && rng() % 2 == 0) bytes[1] = static_cast<char>(bytes.size() - 2);
      check_any_bytes(v, bytes);
    }
  }
}

TEST(MqttMalformed, MutatedValidPackets) {
  std::mt19937 rng(11);
  Properties props;
  props.message_expiry_interval = 60;
  props.content_type = "text/plain";
  props.user_properties = {{"k", "v"}};
  props.reason_string = "r";
  props.subscription_identifiers = {5};
  const std::vector<Packet> seeds = {
      Publish{"user/a/inbox/b", "hello", 1, false, false, 3, props},
      Ack{PacketType::pubrel, 3, 0x92, props},
      Subscribe{4, {{"a/#", {1, true, false, 1}}, {"b", {2}}}, props},
      Unsubscribe{5, {"a/#", "b"}, props},
      Disconnect{0x04, props},
      Auth{0x18, props},
  };
  for (Version v : {v311, v5}) {
    for (const Packet& seed : seeds) {
      if (v == v311 && std::holds_alternative<Auth>(seed)) continue;
      const std::string good = encode(seed, v);
      for (int i = 0; i < 500; ++i) {
        std::string bytes = good;
        for (int flips = 1 + static_cast<int>(rng() % 3); flips > 0; --flips) {
          bytes[rng() % bytes.size()] = static_cast<char>(rng());
        }
        if (rng() % 4 == 0) bytes.resize(rng() % bytes.size());
        check_any_bytes(v, bytes);
      }
    }
  }
}

}  // namespace
}  // namespace converge::mqtt
