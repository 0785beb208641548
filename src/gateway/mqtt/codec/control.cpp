// PINGREQ, PINGRESP, DISCONNECT and AUTH (MQTT 5 sections 3.12-3.15; AUTH is MQTT 5 only).
#include <cassert>
#include <string>

#include "gateway/mqtt/codec/codec.hpp"
#include "gateway/mqtt/codec/family.hpp"

namespace converge::mqtt {
namespace codec_detail {

bool decode_empty(Reader& r) {
  return end_of_packet(r);
}

// MQTT 5: remaining length 0 means normal disconnection; below 2, no properties (3.14.2.2.1).
bool decode_disconnect(Reader& r, Version v, Disconnect& d) {
  if (v == Version::v5 && !r.empty()) {
    if (!r.u8(d.reason_code)) return false;
    if (!r.empty() && !read_properties(r, PropertyScope::disconnect, d.properties)) return false;
  }
  return end_of_packet(r);
}

// Remaining length 0 means success without properties (3.15.2.2); a lone reason code is read as
// DISCONNECT's is.
bool decode_auth(Reader& r, Auth& a) {
  if (!r.empty()) {
    if (!r.u8(a.reason_code)) return false;
    if (!r.empty() && !read_properties(r, PropertyScope::auth, a.properties)) return false;
  }
  return end_of_packet(r);
}

}  // namespace codec_detail

void encode(std::string& out, const Pingreq&, Version) {
  out.append({static_cast<char>(codec_detail::first_byte(PacketType::pingreq)), '\0'});
}

void encode(std::string& out, const Pingresp&, Version) {
  out.append({static_cast<char>(codec_detail::first_byte(PacketType::pingresp)), '\0'});
}

void encode(std::string& out, const Disconnect& d, Version v) {
  using namespace codec_detail;
  const uint32_t props =
      v == Version::v5 ? properties_length(d.properties, PropertyScope::disconnect) : 0;
  put_packet(out, first_byte(PacketType::disconnect), [&](auto& s) {
    if (v != Version::v5 || (d.reason_code == reason::success && props == 0)) return;
    s.u8(d.reason_code);
    if (props > 0) put_properties(s, d.properties, PropertyScope::disconnect);
  });
}

void encode(std::string& out, const Auth& a, Version v) {
  using namespace codec_detail;
  assert(v == Version::v5);
  if (v != Version::v5) return;  // AUTH does not exist in 3.1.1
  const uint32_t props = properties_length(a.properties, PropertyScope::auth);
  put_packet(out, first_byte(PacketType::auth), [&](auto& s) {
    if (a.reason_code == reason::success && props == 0) return;
    s.u8(a.reason_code);
    put_properties(s, a.properties, PropertyScope::auth);
  });
}

}  // namespace converge::mqtt
