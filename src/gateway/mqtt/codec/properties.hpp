#pragma once
// The MQTT 5 property block (section 2.2.2): a variable byte integer length, then properties,
// each a variable byte integer identifier and a value. Internal to the codec.
#include <cstdint>

#include "gateway/mqtt/codec/packet.hpp"
#include "gateway/mqtt/codec/wire.hpp"

namespace converge::mqtt::codec_detail {

using wire::Reader;
using wire::Sizer;
using wire::Writer;

// Where a property block sits: in a packet of that type, or in a CONNECT's will.
enum class PropertyScope : uint8_t {
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
  disconnect = 14,
  auth = 15,
  will = 16,
};

constexpr PropertyScope scope_of(PacketType t) {
  return static_cast<PropertyScope>(t);
}

// Reads a property block into `props` (which the caller passes empty). Errors: 0x81 for a
// truncated block, an unknown identifier or a bad value encoding; 0x82 for a property the scope
// does not allow, a second instance of a single-valued property or a value out of its range.
bool read_properties(Reader& r, PropertyScope scope, Properties& props);

// The bytes of the properties `scope` allows that `props` sets, without the length prefix.
uint32_t properties_length(const Properties& props, PropertyScope scope);

// The block: its length, then each allowed property that is set, in identifier order.
void put_properties(Writer& w, const Properties& props, PropertyScope scope);
void put_properties(Sizer& s, const Properties& props, PropertyScope scope);

}  // namespace converge::mqtt::codec_detail
