#pragma once
// What each packet family file (connect.cpp, publish.cpp, ack.cpp, subscribe.cpp, control.cpp)
// gives the Decoder: a decoder of the packet's body, the bytes after the fixed header, which
// codec.cpp has framed and whose first byte it has checked (type, reserved flags, and the
// PUBLISH flags). Each returns false with the reason in r.error(); each refuses bytes left over.
// The encoders are the public encode() overloads of codec.hpp.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/mqtt/codec/packet.hpp"
#include "gateway/mqtt/codec/properties.hpp"
#include "gateway/mqtt/codec/reason_codes.hpp"
#include "gateway/mqtt/codec/wire.hpp"

namespace converge::mqtt::codec_detail {

// `level` is set as soon as the protocol name and level are read and supported.
bool decode_connect(Reader& r, Connect& out, std::optional<Version>& level);
bool decode_connack(Reader& r, Version v, Connack& out);
bool decode_publish(Reader& r, uint8_t flags, Version v, Publish& out);
bool decode_ack(Reader& r, PacketType type, Version v, Ack& out);
bool decode_subscribe(Reader& r, Version v, Subscribe& out);
bool decode_suback(Reader& r, Version v, Suback& out);
bool decode_unsubscribe(Reader& r, Version v, Unsubscribe& out);
bool decode_unsuback(Reader& r, Version v, Unsuback& out);
bool decode_empty(Reader& r);  // PINGREQ, PINGRESP
bool decode_disconnect(Reader& r, Version v, Disconnect& out);
bool decode_auth(Reader& r, Auth& out);

// The first byte of a fixed header.
constexpr uint8_t first_byte(PacketType t, uint8_t flags = 0) {
  return static_cast<uint8_t>((static_cast<uint8_t>(t) << 4) | flags);
}

// Writes a whole packet: `body(sink)` is called once with a Sizer, for the remaining length,
// then with a Writer.
template <class Body>
void put_packet(std::string& out, uint8_t first, const Body& body) {
  Sizer size;
  body(size);
  out.reserve(out.size() + 1 + wire::varint_size(static_cast<uint32_t>(size.size)) + size.size);
  Writer w(out);
  w.u8(first);
  w.varint(static_cast<uint32_t>(size.size));
  body(w);
}

// MQTT-3.3.2-2: a topic name has no wildcard characters. (Filters are topic.hpp's business.)
inline bool has_wildcard(std::string_view topic) {
  return topic.find_first_of("+#") != std::string_view::npos;
}

// A packet identifier, which MQTT-2.2.1-3 wants non-zero wherever one is present.
inline bool read_packet_id(Reader& r, uint16_t& id) {
  if (!r.u16(id)) return false;
  if (id == 0) return r.fail(reason::protocol_error, "packet identifier 0");
  return true;
}

inline bool end_of_packet(Reader& r) {
  if (r.failed()) return false;
  if (!r.empty()) return r.fail(reason::malformed_packet, "bytes after the end of the packet");
  return true;
}

}  // namespace converge::mqtt::codec_detail
