// PUBLISH (MQTT 5 section 3.3; 3.1.1 the same without properties).
#include <string>

#include "gateway/mqtt/codec/codec.hpp"
#include "gateway/mqtt/codec/family.hpp"

namespace converge::mqtt {
namespace codec_detail {

// The flags (DUP, QoS, RETAIN) were checked with the fixed header: QoS is 0..2, no DUP at QoS 0.
bool decode_publish(Reader& r, uint8_t flags, Version v, Publish& p) {
  p.dup = (flags & 0x08) != 0;
  p.qos = static_cast<uint8_t>((flags >> 1) & 3);
  p.retain = (flags & 0x01) != 0;
  if (!r.utf8(p.topic)) return false;
  if (has_wildcard(p.topic)) {
    return r.fail(reason::topic_name_invalid, "publish topic contains a wildcard");
  }
  if (p.qos > 0 && !read_packet_id(r, p.packet_id)) return false;
  if (v == Version::v5) {
    if (!read_properties(r, PropertyScope::publish, p.properties)) return false;
    if (p.properties.topic_alias == 0) {
      return r.fail(reason::topic_alias_invalid, "topic alias 0");  // MQTT-3.3.2-8
    }
  }
  // An empty topic stands for the topic alias's topic; without an alias it is a protocol error
  // (MQTT 5 section 3.3.2.3.4), and 3.1.1 has no aliases (MQTT-4.7.3-1).
  if (p.topic.empty() && !p.properties.topic_alias) {
    return r.fail(reason::protocol_error, "empty publish topic without a topic alias");
  }
  p.payload.assign(r.rest());
  return true;
}

}  // namespace codec_detail

void encode(std::string& out, const Publish& p, Version v) {
  using namespace codec_detail;
  auto flags = static_cast<uint8_t>((p.qos & 3) << 1);
  if (p.dup && p.qos > 0) flags |= 0x08;
  if (p.retain) flags |= 0x01;
  put_packet(out, first_byte(PacketType::publish, flags), [&](auto& s) {
    s.utf8(p.topic);
    if (p.qos > 0) s.u16(p.packet_id);
    if (v == Version::v5) put_properties(s, p.properties, PropertyScope::publish);
    s.raw(p.payload);
  });
}

}  // namespace converge::mqtt
