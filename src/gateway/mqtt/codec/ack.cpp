// PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 5 sections 3.4-3.7): a packet identifier, then in
// MQTT 5 a reason code and properties, both of which may be left out (remaining length 2: success,
// none; 3: no properties).
#include <string>

#include "gateway/mqtt/codec/codec.hpp"
#include "gateway/mqtt/codec/family.hpp"

namespace converge::mqtt {
namespace codec_detail {

bool decode_ack(Reader& r, PacketType type, Version v, Ack& a) {
  a.type = type;
  if (!read_packet_id(r, a.packet_id)) return false;
  if (v == Version::v5 && !r.empty()) {
    if (!r.u8(a.reason_code)) return false;
    if (!r.empty() && !read_properties(r, scope_of(type), a.properties)) return false;
  }
  return end_of_packet(r);
}

}  // namespace codec_detail

void encode(std::string& out, const Ack& a, Version v) {
  using namespace codec_detail;
  const uint8_t flags = a.type == PacketType::pubrel ? 0x02 : 0x00;  // MQTT-3.6.1-1
  const uint32_t props = v == Version::v5 ? properties_length(a.properties, scope_of(a.type)) : 0;
  put_packet(out, first_byte(a.type, flags), [&](auto& s) {
    s.u16(a.packet_id);
    if (v != Version::v5 || (a.reason_code == reason::success && props == 0)) return;
    s.u8(a.reason_code);
    if (props > 0) put_properties(s, a.properties, scope_of(a.type));
  });
}

}  // namespace converge::mqtt
