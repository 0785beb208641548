#pragma once
// MQTT 5 reason codes (section 2.4) and the 3.1.1 CONNACK return codes (3.1.1 section 3.2.2.3).
// The broker speaks MQTT 5 codes only; the codec maps a CONNACK to 3.1.1 at the wire.
#include <cstdint>

namespace converge::mqtt {

namespace reason {
enum Code : uint8_t {
  success = 0x00,  // also: normal disconnection, granted QoS 0
  normal_disconnection = 0x00,
  granted_qos0 = 0x00,
  granted_qos1 = 0x01,
  granted_qos2 = 0x02,
  disconnect_with_will_message = 0x04,
  no_matching_subscribers = 0x10,
  no_subscription_existed = 0x11,
  continue_authentication = 0x18,
  reauthenticate = 0x19,
  unspecified_error = 0x80,
  malformed_packet = 0x81,
  protocol_error = 0x82,
  implementation_specific_error = 0x83,
  unsupported_protocol_version = 0x84,
  client_identifier_not_valid = 0x85,
  bad_user_name_or_password = 0x86,
  not_authorized = 0x87,
  server_unavailable = 0x88,
  server_busy = 0x89,
  banned = 0x8A,
  server_shutting_down = 0x8B,
  bad_authentication_method = 0x8C,
  keep_alive_timeout = 0x8D,
  session_taken_over = 0x8E,
  topic_filter_invalid = 0x8F,
  topic_name_invalid = 0x90,
  packet_identifier_in_use = 0x91,
  packet_identifier_not_found = 0x92,
  receive_maximum_exceeded = 0x93,
  topic_alias_invalid = 0x94,
  packet_too_large = 0x95,
  message_rate_too_high = 0x96,
  quota_exceeded = 0x97,
  administrative_action = 0x98,
  payload_format_invalid = 0x99,
  retain_not_supported = 0x9A,
  qos_not_supported = 0x9B,
  use_another_server = 0x9C,
  server_moved = 0x9D,
  shared_subscriptions_not_supported = 0x9E,
  connection_rate_exceeded = 0x9F,
  maximum_connect_time = 0xA0,
  subscription_identifiers_not_supported = 0xA1,
  wildcard_subscriptions_not_supported = 0xA2,
};
}  // namespace reason

// 3.1.1 CONNACK return codes.
namespace connack_v311 {
enum ReturnCode : uint8_t {
  accepted = 0x00,
  unacceptable_protocol_version = 0x01,
  identifier_rejected = 0x02,
  server_unavailable = 0x03,
  bad_user_name_or_password = 0x04,
  not_authorized = 0x05,
};
}  // namespace connack_v311

// The 3.1.1 return code that says what MQTT 5 `reason_code` says, as near as 3.1.1 can. Codes
// without a counterpart (malformed packet, protocol error, ...) become server_unavailable; in
// 3.1.1 a server answers those by closing the connection rather than with a CONNACK.
constexpr uint8_t connack_v311_return_code(uint8_t reason_code) {
  switch (reason_code) {
    case reason::success:
      return connack_v311::accepted;
    case reason::unsupported_protocol_version:
      return connack_v311::unacceptable_protocol_version;
    case reason::client_identifier_not_valid:
      return connack_v311::identifier_rejected;
    case reason::bad_user_name_or_password:
    case reason::bad_authentication_method:
      return connack_v311::bad_user_name_or_password;
    case reason::not_authorized:
    case reason::banned:
      return connack_v311::not_authorized;
    default:
      return connack_v311::server_unavailable;
  }
}

// The MQTT 5 reason code for a 3.1.1 return code (0..5; the decoder refuses the others).
constexpr uint8_t connack_reason_from_v311(uint8_t return_code) {
  switch (return_code) {
    case connack_v311::accepted:
      return reason::success;
    case connack_v311::unacceptable_protocol_version:
      return reason::unsupported_protocol_version;
    case connack_v311::identifier_rejected:
      return reason::client_identifier_not_valid;
    case connack_v311::server_unavailable:
      return reason::server_unavailable;
    case connack_v311::bad_user_name_or_password:
      return reason::bad_user_name_or_password;
    case connack_v311::not_authorized:
      return reason::not_authorized;
    default:
      return reason::unspecified_error;
  }
}

}  // namespace converge::mqtt
