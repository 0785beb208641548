// CONNECT and CONNACK (MQTT 5 sections 3.1 and 3.2; 3.1.1 the same without properties).
#include <string>

#include "gateway/mqtt/codec/codec.hpp"
#include "gateway/mqtt/codec/family.hpp"

namespace converge::mqtt {
namespace codec_detail {
namespace {

// CONNECT flags (section 3.1.2.3).
constexpr uint8_t kReserved = 0x01;
constexpr uint8_t kCleanStart = 0x02;
constexpr uint8_t kWill = 0x04;
constexpr uint8_t kWillQosShift = 3;
constexpr uint8_t kWillRetain = 0x20;
constexpr uint8_t kPassword = 0x40;
constexpr uint8_t kUsername = 0x80;

// CONNACK acknowledge flags.
constexpr uint8_t kSessionPresent = 0x01;

}  // namespace

bool decode_connect(Reader& r, Connect& c, std::optional<Version>& level) {
  std::string name;
  uint8_t protocol_level = 0;
  if (!r.utf8(name) || !r.u8(protocol_level)) return false;
  if (name == "MQTT" && (protocol_level == 4 || protocol_level == 5)) {
    c.version = static_cast<Version>(protocol_level);
    level = c.version;
  } else if (name == "MQIsdp") {
    return r.fail(reason::unsupported_protocol_version, "MQTT 3.1 (MQIsdp) is not supported");
  } else if (name == "MQTT") {
    return r.fail(reason::unsupported_protocol_version,
                  "unsupported protocol level " + std::to_string(protocol_level));
  } else {
    return r.fail(reason::unsupported_protocol_version, "protocol name is not MQTT");
  }
  const bool v5 = c.version == Version::v5;

  uint8_t flags = 0;
  if (!r.u8(flags)) return false;
  const bool will = (flags & kWill) != 0;
  const auto will_qos = static_cast<uint8_t>((flags >> kWillQosShift) & 3);
  const bool will_retain = (flags & kWillRetain) != 0;
  if ((flags & kReserved) != 0) return r.fail(reason::malformed_packet, "reserved connect flag");
  if (!will && (will_qos != 0 || will_retain)) {
    return r.fail(reason::malformed_packet, "will QoS or retain without a will");
  }
  if (will_qos == 3) return r.fail(reason::malformed_packet, "will QoS 3");
  // MQTT-3.1.2-22; MQTT 5 allows a password alone (for other authentication schemes).
  if (!v5 && (flags & kPassword) != 0 && (flags & kUsername) == 0) {
    return r.fail(reason::protocol_error, "password without a user name");
  }
  c.clean_start = (flags & kCleanStart) != 0;
  if (!r.u16(c.keep_alive)) return false;
  if (v5) {
    if (!read_properties(r, PropertyScope::connect, c.properties)) return false;
    if (c.properties.authentication_data && !c.properties.authentication_method) {
      return r.fail(reason::protocol_error, "authentication data without a method");
    }
  }

  if (!r.utf8(c.client_id)) return false;
  if (will) {
    Will& w = c.will.emplace();
    w.qos = will_qos;
    w.retain = will_retain;
    if (v5 && !read_properties(r, PropertyScope::will, w.properties)) return false;
    if (!r.utf8(w.topic) || !r.binary(w.payload)) return false;
    if (w.topic.empty() || has_wildcard(w.topic)) {
      return r.fail(reason::topic_name_invalid, "will topic is empty or has a wildcard");
    }
  }
  if ((flags & kUsername) != 0 && !r.utf8(c.username.emplace())) return false;
  if ((flags & kPassword) != 0 && !r.binary(c.password.emplace())) return false;
  return end_of_packet(r);
}

bool decode_connack(Reader& r, Version v, Connack& c) {
  uint8_t flags = 0;
  uint8_t code = 0;
  if (!r.u8(flags) || !r.u8(code)) return false;
  if ((flags & ~kSessionPresent) != 0) {
    return r.fail(reason::malformed_packet, "reserved connack flags");
  }
  c.session_present = (flags & kSessionPresent) != 0;
  if (v == Version::v5) {
    c.reason_code = code;
    if (!read_properties(r, PropertyScope::connack, c.properties)) return false;
  } else {
    if (code > connack_v311::not_authorized) {
      return r.fail(reason::protocol_error, "reserved connack return code");
    }
    c.reason_code = connack_reason_from_v311(code);
  }
  // MQTT-3.2.2-6 (3.1.1: MQTT-3.2.2-4).
  if (c.session_present && c.reason_code != reason::success) {
    return r.fail(reason::protocol_error, "session present on a refused connection");
  }
  return end_of_packet(r);
}

}  // namespace codec_detail

void encode(std::string& out, const Connect& c) {
  using namespace codec_detail;
  const bool v5 = c.version == Version::v5;
  uint8_t flags = 0;
  if (c.clean_start) flags |= kCleanStart;
  if (c.will) {
    flags |= kWill | static_cast<uint8_t>((c.will->qos & 3) << kWillQosShift);
    if (c.will->retain) flags |= kWillRetain;
  }
  if (c.username) flags |= kUsername;
  if (c.password) flags |= kPassword;
  put_packet(out, first_byte(PacketType::connect), [&](auto& s) {
    s.utf8("MQTT");
    s.u8(static_cast<uint8_t>(c.version));
    s.u8(flags);
    s.u16(c.keep_alive);
    if (v5) put_properties(s, c.properties, PropertyScope::connect);
    s.utf8(c.client_id);
    if (c.will) {
      if (v5) put_properties(s, c.will->properties, PropertyScope::will);
      s.utf8(c.will->topic);
      s.binary(c.will->payload);
    }
    if (c.username) s.utf8(*c.username);
    if (c.password) s.binary(*c.password);
  });
}

void encode(std::string& out, const Connack& c, Version v) {
  using namespace codec_detail;
  put_packet(out, first_byte(PacketType::connack), [&](auto& s) {
    s.u8(c.session_present ? kSessionPresent : 0);
    if (v == Version::v5) {
      s.u8(c.reason_code);
      put_properties(s, c.properties, PropertyScope::connack);
    } else {
      s.u8(connack_v311_return_code(c.reason_code));
    }
  });
}

}  // namespace converge::mqtt
