// The Decoder frames packets (fixed header: type, flags, remaining length), checks what the
// first byte alone says, and hands each body to its family's decoder (family.hpp), in the manner
// of mosquitto's read_handle.c switch.
#include "gateway/mqtt/codec/codec.hpp"

#include <string>
#include <type_traits>
#include <utility>

#include "gateway/mqtt/codec/family.hpp"

namespace converge::mqtt {
namespace {

// Buffer capacity kept between packets (bytes); above it an emptied buffer is released.
constexpr std::size_t kKeptCapacity = 64 * 1024;

}  // namespace

PacketType packet_type(const Packet& p) {
  struct Visitor {
    PacketType operator()(const Connect&) const { return PacketType::connect; }
    PacketType operator()(const Connack&) const { return PacketType::connack; }
    PacketType operator()(const Publish&) const { return PacketType::publish; }
    PacketType operator()(const Ack& a) const { return a.type; }
    PacketType operator()(const Subscribe&) const { return PacketType::subscribe; }
    PacketType operator()(const Suback&) const { return PacketType::suback; }
    PacketType operator()(const Unsubscribe&) const { return PacketType::unsubscribe; }
    PacketType operator()(const Unsuback&) const { return PacketType::unsuback; }
    PacketType operator()(const Pingreq&) const { return PacketType::pingreq; }
    PacketType operator()(const Pingresp&) const { return PacketType::pingresp; }
    PacketType operator()(const Disconnect&) const { return PacketType::disconnect; }
    PacketType operator()(const Auth&) const { return PacketType::auth; }
  };
  return std::visit(Visitor{}, p);
}

Decoder Decoder::for_server(std::size_t max_packet_size) {
  return Decoder(Side::server, std::nullopt, max_packet_size);
}

Decoder Decoder::for_client(Version version, std::size_t max_packet_size) {
  return Decoder(Side::client, version, max_packet_size);
}

void Decoder::feed(std::string_view bytes) {
  if (failed_) return;
  // Drop what next() consumed; only a partial packet is moved (usually nothing). An idle
  // connection does not keep the capacity a large packet once needed.
  if (start_ == buf_.size()) {
    if (buf_.capacity() > kKeptCapacity) {
      std::string().swap(buf_);
    } else {
      buf_.clear();
    }
  } else if (start_ > 0) {
    buf_.erase(0, start_);
  }
  start_ = 0;
  buf_.append(bytes);
}

std::optional<Packet> Decoder::fail(uint8_t reason_code, std::string message) {
  failed_ = true;
  error_ = DecodeError{reason_code, std::move(message)};
  buf_.clear();
  start_ = 0;
  return std::nullopt;
}

// Everything the first byte tells, checked before the rest of the packet arrives.
bool Decoder::check_first_byte(uint8_t b) {
  const auto type = static_cast<PacketType>(b >> 4);
  const uint8_t flags = b & 0x0F;
  if (type == PacketType{0}) {
    fail(reason::malformed_packet, "reserved packet type 0");
    return false;
  }
  if (side_ == Side::server) {
    if (!connected_ && type != PacketType::connect) {
      fail(reason::protocol_error, "first packet is not CONNECT");  // MQTT-3.1.0-1
      return false;
    }
    if (connected_ && type == PacketType::connect) {
      fail(reason::protocol_error, "second CONNECT");  // MQTT-3.1.0-2
      return false;
    }
    if (type == PacketType::connack || type == PacketType::suback || type == PacketType::unsuback ||
        type == PacketType::pingresp) {
      fail(reason::protocol_error, "packet type sent only by servers");
      return false;
    }
  } else if (type == PacketType::connect || type == PacketType::subscribe ||
             type == PacketType::unsubscribe || type == PacketType::pingreq) {
    fail(reason::protocol_error, "packet type sent only by clients");
    return false;
  }
  if (type == PacketType::auth && version_ == Version::v311) {
    fail(reason::malformed_packet, "reserved packet type 15 (AUTH) in MQTT 3.1.1");
    return false;
  }
  if (type == PacketType::publish) {
    const int qos = (flags >> 1) & 3;
    if (qos == 3) {
      fail(reason::malformed_packet, "publish QoS 3");  // MQTT-3.3.1-4
      return false;
    }
    if (qos == 0 && (flags & 0x08) != 0) {
      fail(reason::malformed_packet, "DUP set on a QoS 0 publish");  // MQTT-3.3.1-2
      return false;
    }
    return true;
  }
  // MQTT-2.2.2-2: fixed flags, 0010 for PUBREL, SUBSCRIBE and UNSUBSCRIBE, else 0000.
  const bool two = type == PacketType::pubrel || type == PacketType::subscribe ||
                   type == PacketType::unsubscribe;
  if (flags != (two ? 0x02 : 0x00)) {
    fail(reason::malformed_packet, "reserved fixed header flags");
    return false;
  }
  return true;
}

std::optional<Packet> Decoder::next() {
  if (failed_) return std::nullopt;
  const std::string_view in = std::string_view(buf_).substr(start_);
  if (in.empty()) return std::nullopt;
  const auto first = static_cast<uint8_t>(in[0]);
  if (!check_first_byte(first)) return std::nullopt;

  // The remaining length: at most 4 bytes, in the fewest bytes (MQTT-1.5.5-1).
  uint32_t length = 0;
  std::size_t header = 1;
  for (;;) {
    if (header >= in.size()) return std::nullopt;  // more to come
    const auto b = static_cast<uint8_t>(in[header]);
    length |= static_cast<uint32_t>(b & 0x7F) << (7 * (header - 1));
    ++header;
    if ((b & 0x80) == 0) {
      if (header > 2 && b == 0) return fail(reason::malformed_packet, "non-minimal length");
      break;
    }
    if (header == 5) return fail(reason::malformed_packet, "remaining length over 4 bytes");
  }
  // Refused from the header alone, so that an announced giant is never buffered.
  if (header + length > max_packet_size_) {
    return fail(reason::packet_too_large, "packet of " + std::to_string(header + length) +
                                              " bytes over the limit of " +
                                              std::to_string(max_packet_size_));
  }
  if (in.size() - header < length) return std::nullopt;
  const std::string_view body = in.substr(header, length);
  start_ += header + length;
  return decode(first, body);
}

std::optional<Packet> Decoder::decode(uint8_t first_byte, std::string_view body) {
  using namespace codec_detail;
  const auto type = static_cast<PacketType>(first_byte >> 4);
  const Version v = version_.value_or(Version::v5);  // set unless this is the CONNECT
  Reader r(body);
  std::optional<Packet> out;
  bool ok = false;
  switch (type) {
    case PacketType::connect: {
      Connect c;
      std::optional<Version> level;
      ok = decode_connect(r, c, level);
      if (level) version_ = level;
      connected_ = true;
      if (ok) out.emplace(std::move(c));
      break;
    }
    case PacketType::connack: {
      Connack c;
      ok = decode_connack(r, v, c);
      if (ok) out.emplace(std::move(c));
      break;
    }
    case PacketType::publish: {
      Publish p;
      ok = decode_publish(r, first_byte & 0x0F, v, p);
      if (ok && side_ == Side::server && !p.properties.subscription_identifiers.empty()) {
        ok = r.fail(reason::protocol_error, "subscription identifier from a client");
      }
      if (ok) out.emplace(std::move(p));
      break;
    }
    case PacketType::puback:
    case PacketType::pubrec:
    case PacketType::pubrel:
    case PacketType::pubcomp: {
      Ack a;
      ok = decode_ack(r, type, v, a);
      if (ok) out.emplace(std::move(a));
      break;
    }
    case PacketType::subscribe: {
      Subscribe s;
      ok = decode_subscribe(r, v, s);
      if (ok) out.emplace(std::move(s));
      break;
    }
    case PacketType::suback: {
      Suback s;
      ok = decode_suback(r, v, s);
      if (ok) out.emplace(std::move(s));
      break;
    }
    case PacketType::unsubscribe: {
      Unsubscribe u;
      ok = decode_unsubscribe(r, v, u);
      if (ok) out.emplace(std::move(u));
      break;
    }
    case PacketType::unsuback: {
      Unsuback u;
      ok = decode_unsuback(r, v, u);
      if (ok) out.emplace(std::move(u));
      break;
    }
    case PacketType::pingreq:
      ok = decode_empty(r);
      if (ok) out.emplace(Pingreq{});
      break;
    case PacketType::pingresp:
      ok = decode_empty(r);
      if (ok) out.emplace(Pingresp{});
      break;
    case PacketType::disconnect: {
      Disconnect d;
      ok = decode_disconnect(r, v, d);
      if (ok) out.emplace(std::move(d));
      break;
    }
    case PacketType::auth: {
      Auth a;
      ok = decode_auth(r, a);
      if (ok) out.emplace(std::move(a));
      break;
    }
  }
  if (!ok) {
    if (r.failed()) return fail(r.error().reason_code, r.error().message);
    return fail(reason::malformed_packet, "malformed packet");
  }
  return out;
}

void encode(std::string& out, const Packet& p, Version v) {
  std::visit(
      [&](const auto& packet) {
        if constexpr (std::is_same_v<std::decay_t<decltype(packet)>, Connect>) {
          encode(out, packet);
        } else {
          encode(out, packet, v);
        }
      },
      p);
}

std::string encode(const Packet& p, Version v) {
  std::string out;
  encode(out, p, v);
  return out;
}

}  // namespace converge::mqtt
