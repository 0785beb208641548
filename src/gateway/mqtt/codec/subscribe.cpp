// SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (MQTT 5 sections 3.8-3.11).
#include <string>

#include "gateway/mqtt/codec/codec.hpp"
#include "gateway/mqtt/codec/family.hpp"

namespace converge::mqtt {
namespace codec_detail {
namespace {

// Subscription options (section 3.8.3.1); 3.1.1 has only the QoS bits, the rest reserved.
constexpr uint8_t kQosMask = 0x03;
constexpr uint8_t kNoLocal = 0x04;
constexpr uint8_t kRetainAsPublished = 0x08;
constexpr uint8_t kRetainHandlingShift = 4;
constexpr uint8_t kReservedV5 = 0xC0;
constexpr uint8_t kReservedV311 = 0xFC;

}  // namespace

bool decode_subscribe(Reader& r, Version v, Subscribe& s) {
  const bool v5 = v == Version::v5;
  if (!read_packet_id(r, s.packet_id)) return false;
  if (v5 && !read_properties(r, PropertyScope::subscribe, s.properties)) return false;
  while (!r.empty()) {
    Subscription& sub = s.subscriptions.emplace_back();
    uint8_t options = 0;
    if (!r.utf8(sub.filter) || !r.u8(options)) return false;
    // MQTT-3.8.3-5 (3.1.1: MQTT-3-8.3-4): reserved bits set make the packet malformed.
    if ((options & (v5 ? kReservedV5 : kReservedV311)) != 0) {
      return r.fail(reason::malformed_packet, "reserved subscription option bits");
    }
    sub.options.qos = options & kQosMask;
    if (sub.options.qos == 3) return r.fail(reason::malformed_packet, "subscription QoS 3");
    sub.options.no_local = (options & kNoLocal) != 0;
    sub.options.retain_as_published = (options & kRetainAsPublished) != 0;
    sub.options.retain_handling = static_cast<uint8_t>((options >> kRetainHandlingShift) & 3);
    if (sub.options.retain_handling == 3) {
      return r.fail(reason::protocol_error, "retain handling 3");
    }
  }
  if (s.subscriptions.empty()) return r.fail(reason::protocol_error, "subscribe without filters");
  return true;
}

bool decode_suback(Reader& r, Version v, Suback& s) {
  if (!read_packet_id(r, s.packet_id)) return false;
  if (v == Version::v5 && !read_properties(r, PropertyScope::suback, s.properties)) return false;
  const std::string_view codes = r.rest();
  if (codes.empty()) return r.fail(reason::protocol_error, "suback without reason codes");
  s.reason_codes.assign(codes.begin(), codes.end());
  if (v == Version::v311) {
    for (uint8_t c : s.reason_codes) {
      if (c > 2 && c != 0x80) return r.fail(reason::protocol_error, "reserved suback return code");
    }
  }
  return true;
}

bool decode_unsubscribe(Reader& r, Version v, Unsubscribe& u) {
  if (!read_packet_id(r, u.packet_id)) return false;
  if (v == Version::v5 && !read_properties(r, PropertyScope::unsubscribe, u.properties)) {
    return false;
  }
  while (!r.empty()) {
    if (!r.utf8(u.filters.emplace_back())) return false;
  }
  if (u.filters.empty()) return r.fail(reason::protocol_error, "unsubscribe without filters");
  return true;
}

bool decode_unsuback(Reader& r, Version v, Unsuback& u) {
  if (!read_packet_id(r, u.packet_id)) return false;
  if (v == Version::v311) return end_of_packet(r);  // no payload in 3.1.1
  if (!read_properties(r, PropertyScope::unsuback, u.properties)) return false;
  const std::string_view codes = r.rest();
  if (codes.empty()) return r.fail(reason::protocol_error, "unsuback without reason codes");
  u.reason_codes.assign(codes.begin(), codes.end());
  return true;
}

}  // namespace codec_detail

void encode(std::string& out, const Subscribe& p, Version v) {
  using namespace codec_detail;
  const bool v5 = v == Version::v5;
  put_packet(out, first_byte(PacketType::subscribe, 0x02), [&](auto& s) {
    s.u16(p.packet_id);
    if (v5) put_properties(s, p.properties, PropertyScope::subscribe);
    for (const Subscription& sub : p.subscriptions) {
      s.utf8(sub.filter);
      auto options = static_cast<uint8_t>(sub.options.qos & kQosMask);
      if (v5) {
        if (sub.options.no_local) options |= kNoLocal;
        if (sub.options.retain_as_published) options |= kRetainAsPublished;
        options |= static_cast<uint8_t>((sub.options.retain_handling & 3) << kRetainHandlingShift);
      }
      s.u8(options);
    }
  });
}

void encode(std::string& out, const Suback& p, Version v) {
  using namespace codec_detail;
  put_packet(out, first_byte(PacketType::suback), [&](auto& s) {
    s.u16(p.packet_id);
    if (v == Version::v5) put_properties(s, p.properties, PropertyScope::suback);
    for (uint8_t c : p.reason_codes) {
      // 3.1.1 has one failure code, 0x80, for every MQTT 5 reason of refusal.
      s.u8(v == Version::v311 && c >= 0x80 ? uint8_t{0x80} : c);
    }
  });
}

void encode(std::string& out, const Unsubscribe& p, Version v) {
  using namespace codec_detail;
  put_packet(out, first_byte(PacketType::unsubscribe, 0x02), [&](auto& s) {
    s.u16(p.packet_id);
    if (v == Version::v5) put_properties(s, p.properties, PropertyScope::unsubscribe);
    for (const std::string& f : p.filters) s.utf8(f);
  });
}

void encode(std::string& out, const Unsuback& p, Version v) {
  using namespace codec_detail;
  put_packet(out, first_byte(PacketType::unsuback), [&](auto& s) {
    s.u16(p.packet_id);
    if (v != Version::v5) return;
    put_properties(s, p.properties, PropertyScope::unsuback);
    for (uint8_t c : p.reason_codes) s.u8(c);
  });
}

}  // namespace converge::mqtt
