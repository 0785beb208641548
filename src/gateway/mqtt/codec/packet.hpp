#pragma once
// MQTT 3.1.1 and 5.0 control packets as plain values: what the codec decodes from a client's bytes
// and encodes for it. No wire details here (see wire.hpp) and no behaviour beyond equality; the
// broker reads and fills these structs, the codec (codec.hpp) turns them into bytes and back.
//
// One vocabulary for both versions: a field that exists only in MQTT 5 (properties, reason codes
// of acks, subscription options other than QoS) is ignored when encoding 3.1.1 and left at its
// default when decoding it. Reason codes are always MQTT 5 codes (reason_codes.hpp), also for a
// 3.1.1 CONNACK, whose return code the codec maps in both directions.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace converge::mqtt {

enum class PacketType : uint8_t {
  connect = 1,
  connack = 2,
  publish = 3,
  puback = 4,
  pubrec = 5,
  pubrel = 6,
  pubcomp = 7,
  subscribe = 8,
  suback = 9,
  unsubscribe = 10,
  unsuback = 11,
  pingreq = 12,
  pingresp = 13,
  disconnect = 14,
  auth = 15,  // MQTT 5 only; reserved in 3.1.1
};

// The protocol level byte of CONNECT. MQTT 3.1 ("MQIsdp", level 3) is not supported.
enum class Version : uint8_t { v311 = 4, v5 = 5 };

// MQTT 5 properties (section 2.2.2.2). Each packet type allows a subset (properties.cpp): the
// decoder refuses the others, the encoder writes only the allowed ones and ignores the rest.
// Binary data is held in std::string. Intervals are in seconds, sizes in bytes.
struct Properties {
  std::optional<uint8_t> payload_format_indicator;  // 0x01: 0 unspecified bytes, 1 UTF-8
  std::optional<uint32_t> message_expiry_interval;  // 0x02: seconds
  std::optional<std::string> content_type;          // 0x03
  std::optional<std::string> response_topic;        // 0x08
  std::optional<std::string> correlation_data;      // 0x09: binary
  // 0x0B: 1..268,435,455. SUBSCRIBE carries at most one, a PUBLISH to a client one per matching
  // subscription.
  std::vector<uint32_t> subscription_identifiers;
  std::optional<uint32_t> session_expiry_interval;        // 0x11: seconds, 0xFFFFFFFF = never
  std::optional<std::string> assigned_client_identifier;  // 0x12
  std::optional<uint16_t> server_keep_alive;              // 0x13: seconds
  std::optional<std::string> authentication_method;       // 0x15
  std::optional<std::string> authentication_data;         // 0x16: binary
  std::optional<bool> request_problem_information;        // 0x17
  std::optional<uint32_t> will_delay_interval;            // 0x18: seconds
  std::optional<bool> request_response_information;       // 0x19
  std::optional<std::string> response_information;        // 0x1A
  std::optional<std::string> server_reference;            // 0x1C
  std::optional<std::string> reason_string;               // 0x1F
  std::optional<uint16_t> receive_maximum;                // 0x21: 1..65535 unacknowledged QoS>0
  std::optional<uint16_t> topic_alias_maximum;            // 0x22
  std::optional<uint16_t> topic_alias;                    // 0x23: 1..65535
  std::optional<uint8_t> maximum_qos;                     // 0x24: 0 or 1 (absent: 2)
  std::optional<bool> retain_available;                   // 0x25
  std::vector<std::pair<std::string, std::string>> user_properties;  // 0x26: order kept
  std::optional<uint32_t> maximum_packet_size;            // 0x27: bytes, whole packet, >= 1
  std::optional<bool> wildcard_subscription_available;    // 0x28
  std::optional<bool> subscription_identifier_available;  // 0x29
  std::optional<bool> shared_subscription_available;      // 0x2A

  friend bool operator==(const Properties&, const Properties&) = default;
};

struct Will {
  std::string topic;
  std::string payload;  // binary
  uint8_t qos = 0;      // 0..2
  bool retain = false;
  Properties properties;  // MQTT 5 will properties (will delay, message expiry, content type, ...)

  friend bool operator==(const Will&, const Will&) = default;
};

struct Connect {
  Version version = Version::v5;
  std::string client_id;    // may be empty: the server assigns one or refuses (its decision)
  bool clean_start = true;  // 3.1.1: Clean Session
  uint16_t keep_alive = 0;  // seconds, 0 = no keep alive
  std::optional<std::string> username;
  std::optional<std::string> password;  // binary
  std::optional<Will> will;
  Properties properties;

  friend bool operator==(const Connect&, const Connect&) = default;
};

struct Connack {
  bool session_present = false;
  uint8_t reason_code = 0;  // MQTT 5 code; mapped to and from a 3.1.1 return code on the wire
  Properties properties;

  friend bool operator==(const Connack&, const Connack&) = default;
};

struct Publish {
  std::string topic;  // may be empty in MQTT 5 when properties.topic_alias is set
  std::string payload;
  uint8_t qos = 0;  // 0..2
  bool retain = false;
  bool dup = false;        // only with qos > 0
  uint16_t packet_id = 0;  // non-zero when qos > 0, absent from the wire otherwise
  Properties properties;

  friend bool operator==(const Publish&, const Publish&) = default;
};

// PUBACK, PUBREC, PUBREL and PUBCOMP: the same layout, told apart by `type`.
struct Ack {
  PacketType type = PacketType::puback;  // puback, pubrec, pubrel or pubcomp
  uint16_t packet_id = 0;
  uint8_t reason_code = 0;  // MQTT 5 only
  Properties properties;

  friend bool operator==(const Ack&, const Ack&) = default;
};

struct SubscriptionOptions {
  uint8_t qos = 0;                   // maximum QoS, 0..2
  bool no_local = false;             // MQTT 5
  bool retain_as_published = false;  // MQTT 5
  uint8_t retain_handling = 0;       // MQTT 5: 0 send retained, 1 only if new, 2 never

  friend bool operator==(const SubscriptionOptions&, const SubscriptionOptions&) = default;
};

struct Subscription {
  std::string filter;  // a UTF-8 string; filter syntax is checked by topic.hpp, not the codec
  SubscriptionOptions options;

  friend bool operator==(const Subscription&, const Subscription&) = default;
};

struct Subscribe {
  uint16_t packet_id = 0;
  std::vector<Subscription> subscriptions;  // at least one
  Properties properties;

  friend bool operator==(const Subscribe&, const Subscribe&) = default;
};

struct Suback {
  uint16_t packet_id = 0;
  std::vector<uint8_t> reason_codes;  // one per subscription; 3.1.1 knows 0, 1, 2 and 0x80
  Properties properties;

  friend bool operator==(const Suback&, const Suback&) = default;
};

struct Unsubscribe {
  uint16_t packet_id = 0;
  std::vector<std::string> filters;  // at least one
  Properties properties;

  friend bool operator==(const Unsubscribe&, const Unsubscribe&) = default;
};

struct Unsuback {
  uint16_t packet_id = 0;
  std::vector<uint8_t> reason_codes;  // MQTT 5 only (3.1.1 UNSUBACK has no payload)
  Properties properties;

  friend bool operator==(const Unsuback&, const Unsuback&) = default;
};

struct Pingreq {
  friend bool operator==(const Pingreq&, const Pingreq&) = default;
};

struct Pingresp {
  friend bool operator==(const Pingresp&, const Pingresp&) = default;
};

struct Disconnect {
  uint8_t reason_code = 0;  // MQTT 5 only
  Properties properties;

  friend bool operator==(const Disconnect&, const Disconnect&) = default;
};

// MQTT 5 only.
struct Auth {
  uint8_t reason_code = 0;  // 0x00 success, 0x18 continue authentication, 0x19 re-authenticate
  Properties properties;

  friend bool operator==(const Auth&, const Auth&) = default;
};

using Packet = std::variant<Connect, Connack, Publish, Ack, Subscribe, Suback, Unsubscribe,
                            Unsuback, Pingreq, Pingresp, Disconnect, Auth>;

// The control packet type of `p` (for an Ack, its `type`).
PacketType packet_type(const Packet& p);

}  // namespace converge::mqtt
