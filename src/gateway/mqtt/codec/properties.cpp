// The property table of MQTT 5 section 2.2.2.2: each identifier, its type and the packets (and
// will) that may carry it.
#include "gateway/mqtt/codec/properties.hpp"

#include <cstdio>
#include <string>

#include "gateway/mqtt/codec/reason_codes.hpp"

namespace converge::mqtt::codec_detail {
namespace {

enum Id : uint8_t {
  payload_format_indicator = 0x01,
  message_expiry_interval = 0x02,
  content_type = 0x03,
  response_topic = 0x08,
  correlation_data = 0x09,
  subscription_identifier = 0x0B,
  session_expiry_interval = 0x11,
  assigned_client_identifier = 0x12,
  server_keep_alive = 0x13,
  authentication_method = 0x15,
  authentication_data = 0x16,
  request_problem_information = 0x17,
  will_delay_interval = 0x18,
  request_response_information = 0x19,
  response_information = 0x1A,
  server_reference = 0x1C,
  reason_string = 0x1F,
  receive_maximum = 0x21,
  topic_alias_maximum = 0x22,
  topic_alias = 0x23,
  maximum_qos = 0x24,
  retain_available = 0x25,
  user_property = 0x26,
  maximum_packet_size = 0x27,
  wildcard_subscription_available = 0x28,
  subscription_identifier_available = 0x29,
  shared_subscription_available = 0x2A,
};

constexpr uint32_t bit(PropertyScope s) {
  return uint32_t{1} << static_cast<unsigned>(s);
}

using S = PropertyScope;
constexpr uint32_t kMessage = bit(S::publish) | bit(S::will);  // application message properties
constexpr uint32_t kAcks = bit(S::puback) | bit(S::pubrec) | bit(S::pubrel) | bit(S::pubcomp);

// The scopes that allow property `id`; 0 for an identifier MQTT 5 does not define.
constexpr uint32_t allowed_scopes(uint32_t id) {
  switch (id) {
    case payload_format_indicator:
    case message_expiry_interval:
    case content_type:
    case response_topic:
    case correlation_data:
      return kMessage;
    case subscription_identifier:
      return bit(S::publish) | bit(S::subscribe);
    case session_expiry_interval:
      return bit(S::connect) | bit(S::connack) | bit(S::disconnect);
    case assigned_client_identifier:
    case server_keep_alive:
    case response_information:
    case maximum_qos:
    case retain_available:
    case wildcard_subscription_available:
    case subscription_identifier_available:
    case shared_subscription_available:
      return bit(S::connack);
    case authentication_method:
    case authentication_data:
      return bit(S::connect) | bit(S::connack) | bit(S::auth);
    case request_problem_information:
    case request_response_information:
      return bit(S::connect);
    case will_delay_interval:
      return bit(S::will);
    case server_reference:
      return bit(S::connack) | bit(S::disconnect);
    case reason_string:
      return bit(S::connack) | kAcks | bit(S::suback) | bit(S::unsuback) | bit(S::disconnect) |
             bit(S::auth);
    case receive_maximum:
    case topic_alias_maximum:
    case maximum_packet_size:
      return bit(S::connect) | bit(S::connack);
    case topic_alias:
      return bit(S::publish);
    case user_property:
      return bit(S::connect) | bit(S::connack) | kMessage | kAcks | bit(S::subscribe) |
             bit(S::suback) | bit(S::unsubscribe) | bit(S::unsuback) | bit(S::disconnect) |
             bit(S::auth);
    default:
      return 0;
  }
}

constexpr bool allowed(uint32_t id, PropertyScope scope) {
  return (allowed_scopes(id) & bit(scope)) != 0;
}

std::string hex(uint32_t id) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned>(id));
  return buf;
}

// Reading one value into its field; `id` names it in errors.
class ValueReader {
 public:
  ValueReader(Reader& r, uint32_t id) : r_(r), id_(id) {}

  template <class T>
  bool once(const std::optional<T>& field) {
    if (!field) return true;
    return r_.fail(reason::protocol_error, "property " + hex(id_) + " given twice");
  }

  // A byte in [0, max].
  bool byte(std::optional<uint8_t>& field, uint8_t max) {
    uint8_t v = 0;
    if (!once(field) || !r_.u8(v)) return false;
    if (v > max) return out_of_range();
    field = v;
    return true;
  }

  bool flag(std::optional<bool>& field) {
    uint8_t v = 0;
    if (!once(field) || !r_.u8(v)) return false;
    if (v > 1) return out_of_range();
    field = v == 1;
    return true;
  }

  bool two(std::optional<uint16_t>& field, bool nonzero = false) {
    uint16_t v = 0;
    if (!once(field) || !r_.u16(v)) return false;
    if (nonzero && v == 0) return out_of_range();
    field = v;
    return true;
  }

  bool four(std::optional<uint32_t>& field, bool nonzero = false) {
    uint32_t v = 0;
    if (!once(field) || !r_.u32(v)) return false;
    if (nonzero && v == 0) return out_of_range();
    field = v;
    return true;
  }

  bool text(std::optional<std::string>& field) {
    std::string v;
    if (!once(field) || !r_.utf8(v)) return false;
    field = std::move(v);
    return true;
  }

  bool bytes(std::optional<std::string>& field) {
    std::string v;
    if (!once(field) || !r_.binary(v)) return false;
    field = std::move(v);
    return true;
  }

  bool out_of_range() {
    return r_.fail(reason::protocol_error, "property " + hex(id_) + " has a value out of range");
  }

 private:
  Reader& r_;
  uint32_t id_;
};

bool read_property(Reader& r, uint32_t id, PropertyScope scope, Properties& p) {
  ValueReader v(r, id);
  switch (id) {
    case payload_format_indicator:
      return v.byte(p.payload_format_indicator, 1);
    case message_expiry_interval:
      return v.four(p.message_expiry_interval);
    case content_type:
      return v.text(p.content_type);
    case response_topic:
      if (!v.text(p.response_topic)) return false;
      // MQTT-3.3.2-14: a topic name, so no wildcards.
      if (p.response_topic->find_first_of("+#") != std::string::npos) {
        return r.fail(reason::protocol_error, "response topic contains a wildcard");
      }
      return true;
    case correlation_data:
      return v.bytes(p.correlation_data);
    case subscription_identifier: {
      // A PUBLISH to a client carries one per matching subscription; a SUBSCRIBE only one.
      if (scope != S::publish && !p.subscription_identifiers.empty()) {
        return r.fail(reason::protocol_error, "property " + hex(id) + " given twice");
      }
      uint32_t n = 0;
      if (!r.varint(n)) return false;
      if (n == 0) return v.out_of_range();
      p.subscription_identifiers.push_back(n);
      return true;
    }
    case session_expiry_interval:
      return v.four(p.session_expiry_interval);
    case assigned_client_identifier:
      return v.text(p.assigned_client_identifier);
    case server_keep_alive:
      return v.two(p.server_keep_alive);
    case authentication_method:
      return v.text(p.authentication_method);
    case authentication_data:
      return v.bytes(p.authentication_data);
    case request_problem_information:
      return v.flag(p.request_problem_information);
    case will_delay_interval:
      return v.four(p.will_delay_interval);
    case request_response_information:
      return v.flag(p.request_response_information);
    case response_information:
      return v.text(p.response_information);
    case server_reference:
      return v.text(p.server_reference);
    case reason_string:
      return v.text(p.reason_string);
    case receive_maximum:
      return v.two(p.receive_maximum, /*nonzero=*/true);
    case topic_alias_maximum:
      return v.two(p.topic_alias_maximum);
    case topic_alias:
      // 0 is refused by the PUBLISH decoder with its own reason code (topic alias invalid).
      return v.two(p.topic_alias);
    case maximum_qos:
      return v.byte(p.maximum_qos, 1);
    case retain_available:
      return v.flag(p.retain_available);
    case user_property: {
      std::pair<std::string, std::string> kv;
      if (!r.utf8(kv.first) || !r.utf8(kv.second)) return false;
      p.user_properties.push_back(std::move(kv));
      return true;
    }
    case maximum_packet_size:
      return v.four(p.maximum_packet_size, /*nonzero=*/true);
    case wildcard_subscription_available:
      return v.flag(p.wildcard_subscription_available);
    case subscription_identifier_available:
      return v.flag(p.subscription_identifier_available);
    case shared_subscription_available:
      return v.flag(p.shared_subscription_available);
    default:
      return r.fail(reason::malformed_packet, "unknown property " + hex(id));
  }
}

// Every allowed and present property of `p` to `s` (a Writer or a Sizer), in identifier order.
template <class Sink>
void put_each(Sink& s, const Properties& p, PropertyScope scope) {
  auto want = [&](Id id, bool present) {
    if (!present || !allowed(id, scope)) return false;
    s.varint(id);
    return true;
  };
  if (want(payload_format_indicator, p.payload_format_indicator.has_value())) {
    s.u8(*p.payload_format_indicator);
  }
  if (want(message_expiry_interval, p.message_expiry_interval.has_value())) {
    s.u32(*p.message_expiry_interval);
  }
  if (want(content_type, p.content_type.has_value())) s.utf8(*p.content_type);
  if (want(response_topic, p.response_topic.has_value())) s.utf8(*p.response_topic);
  if (want(correlation_data, p.correlation_data.has_value())) s.binary(*p.correlation_data);
  for (uint32_t n : p.subscription_identifiers) {
    if (!want(subscription_identifier, true)) break;
    s.varint(n);
    if (scope != S::publish) break;  // a SUBSCRIBE carries one
  }
  if (want(session_expiry_interval, p.session_expiry_interval.has_value())) {
    s.u32(*p.session_expiry_interval);
  }
  if (want(assigned_client_identifier, p.assigned_client_identifier.has_value())) {
    s.utf8(*p.assigned_client_identifier);
  }
  if (want(server_keep_alive, p.server_keep_alive.has_value())) s.u16(*p.server_keep_alive);
  if (want(authentication_method, p.authentication_method.has_value())) {
    s.utf8(*p.authentication_method);
  }
  if (want(authentication_data, p.authentication_data.has_value())) {
    s.binary(*p.authentication_data);
  }
  if (want(request_problem_information, p.request_problem_information.has_value())) {
    s.u8(*p.request_problem_information ? 1 : 0);
  }
  if (want(will_delay_interval, p.will_delay_interval.has_value())) {
    s.u32(*p.will_delay_interval);
  }
  if (want(request_response_information, p.request_response_information.has_value())) {
    s.u8(*p.request_response_information ? 1 : 0);
  }
  if (want(response_information, p.response_information.has_value())) {
    s.utf8(*p.response_information);
  }
  if (want(server_reference, p.server_reference.has_value())) s.utf8(*p.server_reference);
  if (want(reason_string, p.reason_string.has_value())) s.utf8(*p.reason_string);
  if (want(receive_maximum, p.receive_maximum.has_value())) s.u16(*p.receive_maximum);
  if (want(topic_alias_maximum, p.topic_alias_maximum.has_value())) {
    s.u16(*p.topic_alias_maximum);
  }
  if (want(topic_alias, p.topic_alias.has_value())) s.u16(*p.topic_alias);
  if (want(maximum_qos, p.maximum_qos.has_value())) s.u8(*p.maximum_qos);
  if (want(retain_available, p.retain_available.has_value())) {
    s.u8(*p.retain_available ? 1 : 0);
  }
  for (const auto& [key, value] : p.user_properties) {
    if (!want(user_property, true)) break;
    s.utf8(key);
    s.utf8(value);
  }
  if (want(maximum_packet_size, p.maximum_packet_size.has_value())) {
    s.u32(*p.maximum_packet_size);
  }
  if (want(wildcard_subscription_available, p.wildcard_subscription_available.has_value())) {
    s.u8(*p.wildcard_subscription_available ? 1 : 0);
  }
  if (want(subscription_identifier_available, p.subscription_identifier_available.has_value())) {
    s.u8(*p.subscription_identifier_available ? 1 : 0);
  }
  if (want(shared_subscription_available, p.shared_subscription_available.has_value())) {
    s.u8(*p.shared_subscription_available ? 1 : 0);
  }
}

}  // namespace

bool read_properties(Reader& r, PropertyScope scope, Properties& props) {
  uint32_t length = 0;
  std::string_view block;
  if (!r.varint(length)) return false;
  if (length > r.remaining()) {
    return r.fail(reason::malformed_packet, "property length exceeds the packet");
  }
  if (!r.take(length, block)) return false;
  Reader in(block);
  while (!in.empty()) {
    uint32_t id = 0;
    if (!in.varint(id)) break;
    if (allowed_scopes(id) != 0 && !allowed(id, scope)) {
      in.fail(reason::protocol_error, "property " + hex(id) + " not allowed in this packet");
      break;
    }
    if (!read_property(in, id, scope, props)) break;
  }
  if (in.failed()) return r.fail(in.error().reason_code, in.error().message);
  return true;
}

uint32_t properties_length(const Properties& props, PropertyScope scope) {
  Sizer s;
  put_each(s, props, scope);
  return static_cast<uint32_t>(s.size);
}

void put_properties(Writer& w, const Properties& props, PropertyScope scope) {
  w.varint(properties_length(props, scope));
  put_each(w, props, scope);
}

void put_properties(Sizer& s, const Properties& props, PropertyScope scope) {
  const uint32_t n = properties_length(props, scope);
  s.varint(n);
  s.size += n;
}

}  // namespace converge::mqtt::codec_detail
