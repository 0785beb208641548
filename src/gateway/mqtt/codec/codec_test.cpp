// Round trips of every packet in both versions, byte-exact encodings, and streaming.
#include "gateway/mqtt/codec/codec.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "gateway/mqtt/codec/codec_test_util.hpp"

namespace converge::mqtt {
namespace {

using test::bin;
using test::connected_server;
using test::drain;
using test::packet;
using test::str;

constexpr Version kVersions[] = {Version::v311, Version::v5};

std::string name(Version v) {
  return v == Version::v5 ? "v5" : "v3.1.1";
}

// Every MQTT 5 property, each with one value (the encoder writes only what a packet type allows).
Properties all_props() {
  Properties p;
  p.payload_format_indicator = 1;
  p.message_expiry_interval = 3600;
  p.content_type = "application/json";
  p.response_topic = "reply/to/me";
  p.correlation_data = std::string("\0\x01\xFF", 3);
  p.subscription_identifiers = {1, 300, 268'435'455};
  p.session_expiry_interval = 0xFFFFFFFF;
  p.assigned_client_identifier = "auto-1234";
  p.server_keep_alive = 45;
  p.authentication_method = "SCRAM-SHA-1";
  p.authentication_data = std::string("\0client-first", 13);
  p.request_problem_information = false;
  p.will_delay_interval = 30;
  p.request_response_information = true;
  p.response_information = "resp/";
  p.server_reference = "other.example:1883";
  p.reason_string = "because";
  p.receive_maximum = 20;
  p.topic_alias_maximum = 10;
  p.topic_alias = 7;
  p.maximum_qos = 1;
  p.retain_available = false;
  p.user_properties = {{"a", "1"}, {"a", "2"}, {"b", ""}, {"\xC3\xA9t\xC3\xA9", "x"}};
  p.maximum_packet_size = 65536;
  p.wildcard_subscription_available = true;
  p.subscription_identifier_available = false;
  p.shared_subscription_available = true;
  return p;
}

// The sets each scope allows (MQTT 5 table 2-4), written out independently of properties.cpp.
Properties message_props() {  // PUBLISH and will
  const Properties a = all_props();
  Properties p;
  p.payload_format_indicator = a.payload_format_indicator;
  p.message_expiry_interval = a.message_expiry_interval;
  p.content_type = a.content_type;
  p.response_topic = a.response_topic;
  p.correlation_data = a.correlation_data;
  p.user_properties = a.user_properties;
  return p;
}

// A PUBLISH from a client has no subscription identifiers (MQTT-3.3.4-6).
Properties publish_props(bool to_client) {
  Properties p = message_props();
  p.topic_alias = all_props().topic_alias;
  if (to_client) p.subscription_identifiers = all_props().subscription_identifiers;
  return p;
}

Properties will_props() {
  Properties p = message_props();
  p.will_delay_interval = all_props().will_delay_interval;
  return p;
}

Properties connect_props() {
  const Properties a = all_props();
  Properties p;
  p.session_expiry_interval = a.session_expiry_interval;
  p.authentication_method = a.authentication_method;
  p.authentication_data = a.authentication_data;
  p.request_problem_information = a.request_problem_information;
  p.request_response_information = a.request_response_information;
  p.receive_maximum = a.receive_maximum;
  p.topic_alias_maximum = a.topic_alias_maximum;
  p.maximum_packet_size = a.maximum_packet_size;
  p.user_properties = a.user_properties;
  return p;
}

Properties connack_props() {
  Properties p = all_props();
  p.payload_format_indicator.reset();
  p.message_expiry_interval.reset();
  p.content_type.reset();
  p.response_topic.reset();
  p.correlation_data.reset();
  p.subscription_identifiers.clear();
  p.request_problem_information.reset();
  p.will_delay_interval.reset();
  p.request_response_information.reset();
  p.topic_alias.reset();
  return p;
}

Properties reason_props() {  // acks, SUBACK, UNSUBACK
  Properties p;
  p.reason_string = all_props().reason_string;
  p.user_properties = all_props().user_properties;
  return p;
}

Properties subscribe_props() {  // one subscription identifier: the first
  Properties p;
  p.subscription_identifiers = {all_props().subscription_identifiers.front()};
  p.user_properties = all_props().user_properties;
  return p;
}

Properties unsubscribe_props() {
  Properties p;
  p.user_properties = all_props().user_properties;
  return p;
}

Properties disconnect_props() {
  Properties p = reason_props();
  p.session_expiry_interval = all_props().session_expiry_interval;
  p.server_reference = all_props().server_reference;
  return p;
}

Properties auth_props() {
  Properties p = reason_props();
  p.authentication_method = all_props().authentication_method;
  p.authentication_data = all_props().authentication_data;
  return p;
}

// Decodes `bytes`, which must be exactly one packet: from a client (a server's decoder after a
// CONNECT of `v`) or from a server (a client's decoder).
Packet decode_one(std::string_view bytes, Version v, bool from_client) {
  const bool is_connect = !bytes.empty() && (static_cast<uint8_t>(bytes[0]) >> 4) == 1;
  Decoder d = !from_client ? Decoder::for_client(v)
              : is_connect ? Decoder::for_server()
                           : connected_server(v);
  std::vector<Packet> got = drain(d, bytes);
  EXPECT_FALSE(d.failed()) << d.error().message;
  EXPECT_EQ(got.size(), 1u);
  EXPECT_EQ(d.buffered_bytes(), 0u);
  return got.empty() ? Packet{Pingreq{}} : got.front();
}

template <class T>
T round_trip(const T& p, Version v, bool from_client) {
  const std::string bytes = encode(Packet{p}, v);
  Packet back = decode_one(bytes, v, from_client);
  EXPECT_TRUE(std::holds_alternative<T>(back));
  if (!std::holds_alternative<T>(back)) return T{};
  // Encoding the decoded packet again gives the same bytes.
  EXPECT_EQ(encode(back, v), bytes);
  return std::get<T>(back);
}

Connect full_connect(Version v) {
  Connect c;
  c.version = v;
  c.client_id = "device-\xE2\x82\xAC";
  c.clean_start = false;
  c.keep_alive = 65535;
  c.username = "alice";
  c.password = std::string("s3cr\0t", 6);
  c.will = Will{"user/alice/status", std::string("off\0line", 8), 2, true, {}};
  if (v == Version::v5) {
    c.properties = connect_props();
    c.will->properties = will_props();
  }
  return c;
}

TEST(MqttCodec, ConnectRoundTripsWithEverything) {
  for (Version v : kVersions) {
    SCOPED_TRACE(name(v));
    const Connect c = full_connect(v);
    EXPECT_EQ(round_trip(c, v, true), c);

    Connect minimal;
    minimal.version = v;  // empty client id, no will, no credentials
    EXPECT_EQ(round_trip(minimal, v, true), minimal);

    Connect will_only = minimal;
    will_only.will = Will{"t", "", 1, false, {}};
    EXPECT_EQ(round_trip(will_only, v, true), will_only);
  }
}

TEST(MqttCodec, ConnectSetsTheDecoderVersion) {
  for (Version v : kVersions) {
    Decoder d = Decoder::for_server();
    EXPECT_EQ(d.version(), std::nullopt);
    const auto got = drain(d, encode(Packet{full_connect(v)}, v));
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(std::get<Connect>(got[0]).version, v);
    EXPECT_EQ(d.version(), v);
  }
}

TEST(MqttCodec, ConnectPasswordWithoutUserNameIsAllowedInV5) {
  Connect c;
  c.version = Version::v5;
  c.password = "token";
  EXPECT_EQ(round_trip(c, Version::v5, true), c);
}

TEST(MqttCodec, V311DropsV5Fields) {
  Connect c = full_connect(Version::v5);
  c.version = Version::v311;
  Connect expected = c;
  expected.properties = {};
  expected.will->properties = {};
  EXPECT_EQ(std::get<Connect>(decode_one(encode(Packet{c}, Version::v311), Version::v311, true)),
            expected);

  Subscribe s{9, {{"a/+", {1, true, true, 2}}}, subscribe_props()};
  const auto back = std::get<Subscribe>(decode_one(encode(s, Version::v311), Version::v311, true));
  EXPECT_EQ(back.subscriptions[0].options, (SubscriptionOptions{1, false, false, 0}));
  EXPECT_EQ(back.properties, Properties{});

  Ack a{PacketType::puback, 3, reason::no_matching_subscribers, reason_props()};
  EXPECT_EQ(std::get<Ack>(decode_one(encode(a, Version::v311), Version::v311, true)),
            (Ack{PacketType::puback, 3, 0, {}}));
}

TEST(MqttCodec, ConnackRoundTrips) {
  Connack v5{true, reason::success, connack_props()};
  EXPECT_EQ(round_trip(v5, Version::v5, false), v5);
  Connack refused{false, reason::bad_user_name_or_password, reason_props()};
  EXPECT_EQ(round_trip(refused, Version::v5, false), refused);
  // 3.1.1: no properties; codes that 3.1.1 has survive the mapping.
  for (uint8_t code :
       {reason::success, reason::unsupported_protocol_version, reason::client_identifier_not_valid,
        reason::server_unavailable, reason::bad_user_name_or_password, reason::not_authorized}) {
    Connack c{code == 0, code, {}};
    EXPECT_EQ(round_trip(c, Version::v311, false), c) << int{code};
  }
}

TEST(MqttCodec, ConnackV311MapsMqtt5ReasonCodes) {
  EXPECT_EQ(encode(Connack{false, reason::banned, {}}, Version::v311), bin({0x20, 0x02, 0, 5}));
  EXPECT_EQ(encode(Connack{false, reason::bad_authentication_method, {}}, Version::v311),
            bin({0x20, 0x02, 0, 4}));
  EXPECT_EQ(encode(Connack{false, reason::server_busy, {}}, Version::v311),
            bin({0x20, 0x02, 0, 3}));
  EXPECT_EQ(encode(Connack{false, reason::malformed_packet, {}}, Version::v311),
            bin({0x20, 0x02, 0, 3}));
  EXPECT_EQ(connack_v311_return_code(reason::unsupported_protocol_version), 0x01);
  EXPECT_EQ(connack_reason_from_v311(0x02), reason::client_identifier_not_valid);
}

TEST(MqttCodec, PublishRoundTripsAtEveryQos) {
  for (Version v : kVersions) {
    SCOPED_TRACE(name(v));
    for (uint8_t qos : {0, 1, 2}) {
      Publish p;
      p.topic = "user/bob/inbox/alice";
      p.payload = std::string("{\"text\":\"hi\"}\0\xFF", 15);
      p.qos = qos;
      p.retain = qos == 1;
      p.dup = qos == 2;
      p.packet_id = qos > 0 ? 65535 : 0;
      if (v == Version::v5) p.properties = publish_props(false);
      EXPECT_EQ(round_trip(p, v, true), p);
      if (v == Version::v5) p.properties = publish_props(true);
      EXPECT_EQ(round_trip(p, v, false), p);
    }
  }
}

TEST(MqttCodec, PublishWithEmptyPayloadAndLargePayloads) {
  for (Version v : kVersions) {
    // Remaining lengths of one, two, three and four bytes.
    for (std::size_t size : {0, 200, 20'000, 2'100'000}) {
      Publish p;
      p.topic = "t";
      p.payload.assign(size, 'x');
      p.qos = 1;
      p.packet_id = 1;
      EXPECT_EQ(round_trip(p, v, true), p) << size;
    }
  }
}

TEST(MqttCodec, PublishV5EmptyTopicWithAlias) {
  Publish p;
  p.properties.topic_alias = 3;
  p.payload = "x";
  EXPECT_EQ(round_trip(p, Version::v5, true), p);
}

TEST(MqttCodec, AcksRoundTrip) {
  for (Version v : kVersions) {
    SCOPED_TRACE(name(v));
    for (PacketType t :
         {PacketType::puback, PacketType::pubrec, PacketType::pubrel, PacketType::pubcomp}) {
      Ack a{t, 513, 0, {}};
      EXPECT_EQ(round_trip(a, v, true), a);
      EXPECT_EQ(round_trip(a, v, false), a);
      if (v == Version::v5) {
        Ack coded{t, 1, reason::packet_identifier_not_found, {}};
        EXPECT_EQ(round_trip(coded, v, true), coded);
        Ack full{t, 2, reason::unspecified_error, reason_props()};
        EXPECT_EQ(round_trip(full, v, false), full);
        Ack success_with_props{t, 3, reason::success, reason_props()};
        EXPECT_EQ(round_trip(success_with_props, v, true), success_with_props);
      }
    }
  }
}

TEST(MqttCodec, SubscribeAndSubackRoundTrip) {
  for (Version v : kVersions) {
    SCOPED_TRACE(name(v));
    Subscribe s;
    s.packet_id = 7;
    s.subscriptions = {{"user/alice/#", {1}}, {"group/g1/#", {2}}, {"$share/g/app/+", {0}}};
    if (v == Version::v5) {
      s.subscriptions[0].options = {1, true, false, 0};
      s.subscriptions[1].options = {2, false, true, 1};
      s.subscriptions[2].options = {0, false, false, 2};
      s.properties = subscribe_props();
    }
    EXPECT_EQ(round_trip(s, v, true), s);

    Suback a{7, {0, 1, 2, 0x80}, {}};
    if (v == Version::v5) {
      a.reason_codes.push_back(reason::not_authorized);
      a.properties = reason_props();
    }
    EXPECT_EQ(round_trip(a, v, false), a);
  }
  // 3.1.1 has only 0x80 for a refusal.
  EXPECT_EQ(encode(Suback{1, {reason::not_authorized}, {}}, Version::v311),
            bin({0x90, 0x03, 0x00, 0x01, 0x80}));
}

TEST(MqttCodec, UnsubscribeAndUnsubackRoundTrip) {
  for (Version v : kVersions) {
    SCOPED_TRACE(name(v));
    Unsubscribe u{11, {"a/b", "c/#"}, {}};
    if (v == Version::v5) u.properties = unsubscribe_props();
    EXPECT_EQ(round_trip(u, v, true), u);
    Unsuback a{11, {}, {}};
    if (v == Version::v5) a = Unsuback{11, {0x00, reason::no_subscription_existed}, reason_props()};
    EXPECT_EQ(round_trip(a, v, false), a);
  }
}

TEST(MqttCodec, PingsDisconnectAndAuthRoundTrip) {
  for (Version v : kVersions) {
    SCOPED_TRACE(name(v));
    EXPECT_EQ(round_trip(Pingreq{}, v, true), Pingreq{});
    EXPECT_EQ(round_trip(Pingresp{}, v, false), Pingresp{});
    EXPECT_EQ(round_trip(Disconnect{}, v, true), Disconnect{});
  }
  for (bool from_client : {true, false}) {
    Disconnect will{reason::disconnect_with_will_message, {}};
    EXPECT_EQ(round_trip(will, Version::v5, from_client), will);
    Disconnect full{reason::server_shutting_down, disconnect_props()};
    EXPECT_EQ(round_trip(full, Version::v5, from_client), full);
    EXPECT_EQ(round_trip(Auth{}, Version::v5, from_client), Auth{});
    Auth cont{reason::continue_authentication, auth_props()};
    EXPECT_EQ(round_trip(cont, Version::v5, from_client), cont);
    Auth bare{reason::reauthenticate, {}};
    EXPECT_EQ(round_trip(bare, Version::v5, from_client), bare);
  }
}

// The encoder writes only what the packet type allows (MQTT 5 table 2-4): each round trip of a
// packet carrying every property gives back exactly its own set.
TEST(MqttCodec, EncoderWritesOnlyAllowedProperties) {
  const Version v = Version::v5;
  const Properties all = all_props();

  Connect c = full_connect(v);
  c.properties = all;
  c.will->properties = all;
  const auto cb = std::get<Connect>(decode_one(encode(Packet{c}, v), v, true));
  EXPECT_EQ(cb.properties, connect_props());
  EXPECT_EQ(cb.will->properties, will_props());

  EXPECT_EQ(std::get<Connack>(decode_one(encode(Connack{false, 0, all}, v), v, false)).properties,
            connack_props());

  Publish p{"t", "x", 0, false, false, 0, all};
  EXPECT_EQ(std::get<Publish>(decode_one(encode(p, v), v, false)).properties, publish_props(true));

  for (PacketType t :
       {PacketType::puback, PacketType::pubrec, PacketType::pubrel, PacketType::pubcomp}) {
    EXPECT_EQ(std::get<Ack>(decode_one(encode(Ack{t, 1, 0, all}, v), v, true)).properties,
              reason_props());
  }
  Subscribe s{1, {{"a", {}}}, all};
  EXPECT_EQ(std::get<Subscribe>(decode_one(encode(s, v), v, true)).properties, subscribe_props());
  EXPECT_EQ(std::get<Suback>(decode_one(encode(Suback{1, {0}, all}, v), v, false)).properties,
            reason_props());
  EXPECT_EQ(
      std::get<Unsubscribe>(decode_one(encode(Unsubscribe{1, {"a"}, all}, v), v, true)).properties,
      unsubscribe_props());
  EXPECT_EQ(std::get<Unsuback>(decode_one(encode(Unsuback{1, {0}, all}, v), v, false)).properties,
            reason_props());
  EXPECT_EQ(std::get<Disconnect>(decode_one(encode(Disconnect{0, all}, v), v, true)).properties,
            disconnect_props());
  EXPECT_EQ(std::get<Auth>(decode_one(encode(Auth{0x18, all}, v), v, true)).properties,
            auth_props());
}

// Hand-written encodings, from the specifications' layouts.
TEST(MqttCodec, ByteExactEncodings) {
  EXPECT_EQ(encode(Pingreq{}, Version::v311), bin({0xC0, 0x00}));
  EXPECT_EQ(encode(Pingresp{}, Version::v5), bin({0xD0, 0x00}));
  EXPECT_EQ(encode(Connack{}, Version::v311), bin({0x20, 0x02, 0x00, 0x00}));
  EXPECT_EQ(encode(Connack{true, 0, {}}, Version::v311), bin({0x20, 0x02, 0x01, 0x00}));
  EXPECT_EQ(encode(Connack{}, Version::v5), bin({0x20, 0x03, 0x00, 0x00, 0x00}));
  EXPECT_EQ(encode(Disconnect{}, Version::v311), bin({0xE0, 0x00}));
  EXPECT_EQ(encode(Disconnect{}, Version::v5), bin({0xE0, 0x00}));
  EXPECT_EQ(encode(Disconnect{reason::disconnect_with_will_message, {}}, Version::v5),
            bin({0xE0, 0x01, 0x04}));
  EXPECT_EQ(encode(Auth{}, Version::v5), bin({0xF0, 0x00}));
  EXPECT_EQ(encode(Ack{PacketType::puback, 10, 0, {}}, Version::v311),
            bin({0x40, 0x02, 0x00, 0x0A}));
  EXPECT_EQ(encode(Ack{PacketType::puback, 10, 0, {}}, Version::v5), bin({0x40, 0x02, 0x00, 0x0A}));
  EXPECT_EQ(encode(Ack{PacketType::pubrec, 10, reason::no_matching_subscribers, {}}, Version::v5),
            bin({0x50, 0x03, 0x00, 0x0A, 0x10}));
  EXPECT_EQ(encode(Ack{PacketType::pubrel, 10, 0, {}}, Version::v311),
            bin({0x62, 0x02, 0x00, 0x0A}));
  EXPECT_EQ(encode(Ack{PacketType::pubcomp, 10, 0, {}}, Version::v311),
            bin({0x70, 0x02, 0x00, 0x0A}));
  EXPECT_EQ(encode(Publish{"a/b", "hi", 0, false, false, 0, {}}, Version::v311),
            bin({0x30, 0x07, 0x00, 0x03, "a/bhi"}));
  EXPECT_EQ(encode(Publish{"a/b", "hi", 1, true, true, 10, {}}, Version::v5),
            bin({0x3B, 0x0A, 0x00, 0x03, "a/b", 0x00, 0x0A, 0x00, "hi"}));
  EXPECT_EQ(encode(Subscribe{1, {{"a/b", {1}}}, {}}, Version::v311),
            bin({0x82, 0x08, 0x00, 0x01, 0x00, 0x03, "a/b", 0x01}));
  EXPECT_EQ(encode(Suback{1, {1}, {}}, Version::v311), bin({0x90, 0x03, 0x00, 0x01, 0x01}));
  EXPECT_EQ(encode(Unsubscribe{2, {"a/b"}, {}}, Version::v311),
            bin({0xA2, 0x07, 0x00, 0x02, 0x00, 0x03, "a/b"}));
  EXPECT_EQ(encode(Unsuback{2, {0}, {}}, Version::v311), bin({0xB0, 0x02, 0x00, 0x02}));
  EXPECT_EQ(encode(Unsuback{2, {0}, {}}, Version::v5), bin({0xB0, 0x04, 0x00, 0x02, 0x00, 0x00}));
}

// As `mosquitto_pub -V mqttv311 -i test -k 60 -u u -P p --will-topic w --will-payload x` sends it.
TEST(MqttCodec, ByteExactConnect) {
  const std::string simple =
      bin({0x10, 0x10, 0x00, 0x04, "MQTT", 0x04, 0x02, 0x00, 0x3C, 0x00, 0x04, "test"});
  Connect c;
  c.version = Version::v311;
  c.client_id = "test";
  c.keep_alive = 60;
  EXPECT_EQ(encode(Packet{c}, c.version), simple);
  Decoder d = Decoder::for_server();
  auto got = drain(d, simple);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(std::get<Connect>(got[0]), c);

  // Flags: user name, password, will (QoS 0), clean session = 0xC6.
  const std::string full =
      bin({0x10, 0x1C, 0x00, 0x04, "MQTT", 0x04, 0xC6, 0x00, 0x3C, 0x00, 0x04, "test",
           0x00, 0x01, "w",  0x00, 0x01,   "x",  0x00, 0x01, "u",  0x00, 0x01, "p"});
  c.username = "u";
  c.password = "p";
  c.will = Will{"w", "x", 0, false, {}};
  EXPECT_EQ(encode(Packet{c}, c.version), full);
  Decoder d2 = Decoder::for_server();
  got = drain(d2, full);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(std::get<Connect>(got[0]), c);

  // MQTT 5 with a session expiry interval of 10 seconds.
  const std::string v5 = bin({0x10, 0x13, 0x00, 0x04, "MQTT", 0x05, 0x02, 0x00, 0x0A, 0x05, 0x11,
                              0x00, 0x00, 0x00, 0x0A, 0x00, 0x01, "c"});
  Connect c5;
  c5.client_id = "c";
  c5.keep_alive = 10;
  c5.properties.session_expiry_interval = 10;
  EXPECT_EQ(encode(Packet{c5}, c5.version), v5);
  Decoder d3 = Decoder::for_server();
  got = drain(d3, v5);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(std::get<Connect>(got[0]), c5);
}

TEST(MqttCodec, AckShortFormsDecode) {
  // MQTT 5: remaining length 2 (success, no properties), 3 (no properties), 4 (empty properties).
  const auto a2 = decode_one(bin({0x40, 0x02, 0x00, 0x05}), Version::v5, true);
  EXPECT_EQ(std::get<Ack>(a2), (Ack{PacketType::puback, 5, 0, {}}));
  const auto a3 = decode_one(bin({0x62, 0x03, 0x00, 0x05, 0x92}), Version::v5, true);
  EXPECT_EQ(std::get<Ack>(a3), (Ack{PacketType::pubrel, 5, 0x92, {}}));
  const auto a4 = decode_one(bin({0x70, 0x04, 0x00, 0x05, 0x00, 0x00}), Version::v5, false);
  EXPECT_EQ(std::get<Ack>(a4), (Ack{PacketType::pubcomp, 5, 0, {}}));
  const auto d1 = decode_one(bin({0xE0, 0x01, 0x8E}), Version::v5, false);
  EXPECT_EQ(std::get<Disconnect>(d1).reason_code, reason::session_taken_over);
  EXPECT_EQ(packet_type(a3), PacketType::pubrel);
}

// A mixed conversation a client sends, after its CONNECT.
std::vector<Packet> client_conversation(Version v) {
  std::vector<Packet> ps;
  ps.push_back(full_connect(v));
  ps.push_back(Subscribe{1, {{"user/alice/#", {1}}}, {}});
  ps.push_back(Publish{"user/bob/inbox/alice", std::string(300, 'p'), 1, false, false, 2, {}});
  ps.push_back(Publish{"app/alice/t", "", 0, true, false, 0, {}});
  ps.push_back(Ack{PacketType::pubrec, 3, 0, {}});
  ps.push_back(Ack{PacketType::pubrel, 3, 0, {}});
  ps.push_back(Pingreq{});
  ps.push_back(Unsubscribe{4, {"user/alice/#"}, {}});
  if (v == Version::v5) ps.push_back(Auth{reason::reauthenticate, auth_props()});
  ps.push_back(Disconnect{});
  return ps;
}

TEST(MqttCodec, StreamingOneByteAtATimeYieldsTheSamePackets) {
  for (Version v : kVersions) {
    SCOPED_TRACE(name(v));
    const std::vector<Packet> sent = client_conversation(v);
    std::string bytes;
    for (const Packet& p : sent) encode(bytes, p, v);

    Decoder whole = Decoder::for_server();
    EXPECT_EQ(drain(whole, bytes), sent);  // several packets in one feed

    Decoder bytewise = Decoder::for_server();
    std::vector<Packet> got;
    for (char c : bytes) {
      bytewise.feed(std::string_view(&c, 1));
      while (auto p = bytewise.next()) got.push_back(std::move(*p));
    }
    EXPECT_FALSE(bytewise.failed()) << bytewise.error().message;
    EXPECT_EQ(got, sent);
    EXPECT_EQ(bytewise.buffered_bytes(), 0u);

    // Random chunks, repeatably.
    std::mt19937 rng(42);
    for (int round = 0; round < 20; ++round) {
      Decoder chunked = Decoder::for_server();
      std::vector<Packet> out;
      for (std::size_t at = 0; at < bytes.size();) {
        const std::size_t n = std::min<std::size_t>(bytes.size() - at, 1 + rng() % 64);
        chunked.feed(std::string_view(bytes).substr(at, n));
        at += n;
        while (auto p = chunked.next()) out.push_back(std::move(*p));
      }
      EXPECT_EQ(out, sent);
    }
  }
}

TEST(MqttCodec, PartialPacketWaitsForTheRest) {
  Decoder d = connected_server(Version::v5);
  const std::string bytes = encode(Publish{"t", "payload", 0, false, false, 0, {}}, Version::v5);
  d.feed(std::string_view(bytes).substr(0, 1));
  EXPECT_FALSE(d.next());
  d.feed(std::string_view(bytes).substr(1, 3));
  EXPECT_FALSE(d.next());
  EXPECT_EQ(d.buffered_bytes(), 4u);
  d.feed(std::string_view(bytes).substr(4));
  auto p = d.next();
  ASSERT_TRUE(p);
  EXPECT_EQ(std::get<Publish>(*p).payload, "payload");
  EXPECT_FALSE(d.failed());
}

TEST(MqttCodec, MaxPacketSizeCountsTheWholePacket) {
  const std::string bytes =
      encode(Publish{"t", std::string(100, 'x'), 0, false, false, 0, {}}, Version::v311);
  Decoder at_limit = connected_server(Version::v311, bytes.size());
  EXPECT_EQ(drain(at_limit, bytes).size(), 1u);
  EXPECT_FALSE(at_limit.failed());

  Decoder below = connected_server(Version::v311, bytes.size() - 1);
  EXPECT_TRUE(drain(below, bytes).empty());
  EXPECT_EQ(below.error().reason_code, reason::packet_too_large);
}

TEST(MqttCodec, ClientDecoderTakesServerPackets) {
  Decoder d = Decoder::for_client(Version::v5);
  std::string bytes;
  const std::vector<Packet> sent = {
      Connack{false, 0, connack_props()},
      Suback{1, {1}, {}},
      Publish{"user/alice/inbox/bob", "hi", 2, false, false, 9, publish_props(true)},
      Unsuback{2, {0}, {}},
      Pingresp{},
      Disconnect{reason::server_shutting_down, {}},
  };
  for (const Packet& p : sent) encode(bytes, p, Version::v5);
  EXPECT_EQ(drain(d, bytes), sent);
  EXPECT_FALSE(d.failed());
}

TEST(MqttCodec, PacketTypeOfEveryAlternative) {
  EXPECT_EQ(packet_type(Connect{}), PacketType::connect);
  EXPECT_EQ(packet_type(Connack{}), PacketType::connack);
  EXPECT_EQ(packet_type(Publish{}), PacketType::publish);
  EXPECT_EQ(packet_type(Ack{PacketType::pubcomp, 1, 0, {}}), PacketType::pubcomp);
  EXPECT_EQ(packet_type(Subscribe{}), PacketType::subscribe);
  EXPECT_EQ(packet_type(Suback{}), PacketType::suback);
  EXPECT_EQ(packet_type(Unsubscribe{}), PacketType::unsubscribe);
  EXPECT_EQ(packet_type(Unsuback{}), PacketType::unsuback);
  EXPECT_EQ(packet_type(Pingreq{}), PacketType::pingreq);
  EXPECT_EQ(packet_type(Pingresp{}), PacketType::pingresp);
  EXPECT_EQ(packet_type(Disconnect{}), PacketType::disconnect);
  EXPECT_EQ(packet_type(Auth{}), PacketType::auth);
}

TEST(MqttCodec, EncodeAppends) {
  std::string out = "prefix";
  encode(out, Pingreq{}, Version::v5);
  encode(out, Packet{Pingresp{}}, Version::v5);
  EXPECT_EQ(out, bin({"prefix", 0xC0, 0x00, 0xD0, 0x00}));
  EXPECT_EQ(packet(0xC0, ""), bin({0xC0, 0x00}));  // the test helper agrees
  EXPECT_EQ(str("ab"), bin({0x00, 0x02, "ab"}));
}

}  // namespace
}  // namespace converge::mqtt
