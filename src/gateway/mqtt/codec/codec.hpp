#pragma once
// The MQTT 3.1.1 / 5.0 codec: bytes to packets (Decoder) and packets to bytes (encode). Pure
// code: no sockets, no clock, no threads; one copy of a payload, from the decoder's buffer into
// its Publish.
//
// A server session owns one Decoder per connection:
//
//   decoder.feed(bytes_read);
//   while (auto packet = decoder.next()) dispatch(*packet);
//   if (decoder.failed()) {
//     // MQTT 5: DISCONNECT (or CONNACK, before the session is up) with
//     // decoder.error().reason_code; 3.1.1: close. Either way the connection ends.
//   }
//
// What the codec checks is everything a packet's bytes alone can tell (MQTT 5 sections 2 and 3,
// 3.1.1 the same): fixed-header flags, the remaining length (at most 4 bytes, minimal, within
// max_packet_size), field encodings, UTF-8 strings, the property table, packet identifiers,
// subscription options, CONNECT's flags and protocol name, and packet order on a connection
// (CONNECT first and once). What it leaves to the broker: topic filter syntax and shared
// subscription rules (topic.hpp), topic alias maxima, receive maximum, client identifier policy,
// authentication (AUTH's method against CONNECT's), the UTF-8 check of a payload whose format
// indicator is 1 (0x99), ACLs.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/mqtt/codec/packet.hpp"
#include "gateway/mqtt/codec/reason_codes.hpp"
#include "gateway/mqtt/codec/wire.hpp"

namespace converge::mqtt {

// Splits a byte stream into packets and decodes them. Not thread-safe; one per connection.
class Decoder {
 public:
  // A server's decoder: the first packet must be CONNECT, whose protocol level sets version();
  // a second CONNECT and the packets only a server sends (CONNACK, SUBACK, UNSUBACK, PINGRESP)
  // are protocol errors, as is a PUBLISH carrying a subscription identifier (MQTT-3.3.4-6).
  // `max_packet_size` bounds a whole packet (fixed header included, as MQTT 5's Maximum Packet
  // Size counts it): a packet announcing more fails with 0x95 as soon as its remaining length
  // has arrived, before any of it is buffered.
  static Decoder for_server(std::size_t max_packet_size = kMaxPacketBytes);
  // A client's decoder (tests, bridges), for the version its CONNECT asked for: refuses the
  // packets only a client sends (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ); no order checks.
  static Decoder for_client(Version version, std::size_t max_packet_size = kMaxPacketBytes);

  // Appends bytes read from the connection.
  void feed(std::string_view bytes);

  // The next whole packet, or nullopt when more bytes are needed or the decoder has failed.
  // After a failure it yields nothing more: the connection must be closed.
  [[nodiscard]] std::optional<Packet> next();

  bool failed() const { return failed_; }
  // The failure; meaningful only when failed().
  const DecodeError& error() const { return error_; }

  // The connection's version: a server's is known once a CONNECT's protocol level has been read
  // (also when the rest of that CONNECT then fails, so that the CONNACK can be sent in the
  // client's version), nullopt before and when the level was unsupported (answer 3.1.1-style:
  // CONNACK 0x01, then close).
  std::optional<Version> version() const { return version_; }

  // Bytes fed and not yet consumed by next() (a partial packet, or whole ones not yet taken).
  std::size_t buffered_bytes() const { return buf_.size() - start_; }

 private:
  enum class Side { server, client };
  Decoder(Side side, std::optional<Version> version, std::size_t max_packet_size)
      : side_(side), version_(version), max_packet_size_(max_packet_size) {}

  bool check_first_byte(uint8_t b);
  std::optional<Packet> decode(uint8_t first_byte, std::string_view body);
  std::optional<Packet> fail(uint8_t reason_code, std::string message);

  Side side_;
  std::optional<Version> version_;
  std::size_t max_packet_size_;  // bytes of a whole packet
  bool connected_ = false;       // server: a CONNECT has been decoded
  std::string buf_;              // bytes fed; those before start_ are consumed
  std::size_t start_ = 0;
  bool failed_ = false;
  DecodeError error_;
};

// Encoding appends one packet to `out`, in version `v`; MQTT 5 fields are dropped in 3.1.1 and
// only the properties that the packet type allows are written. Preconditions (asserted, not
// checked in release builds): strings at most 65535 bytes, the packet within kMaxPacketBytes,
// QoS at most 2, an Ack's type one of puback/pubrec/pubrel/pubcomp, no AUTH in 3.1.1 (nothing is
// written). What the decoder would refuse for other reasons (a wildcard in a PUBLISH topic, a
// packet identifier 0, a 3.1.1 password without a user name) is written as given: the broker
// sends what it decoded or built itself. The caller compares out.size() with the peer's Maximum
// Packet Size.
void encode(std::string& out, const Connect& p);  // in p.version
void encode(std::string& out, const Connack& p, Version v);
void encode(std::string& out, const Publish& p, Version v);
void encode(std::string& out, const Ack& p, Version v);
void encode(std::string& out, const Subscribe& p, Version v);
void encode(std::string& out, const Suback& p, Version v);
void encode(std::string& out, const Unsubscribe& p, Version v);
void encode(std::string& out, const Unsuback& p, Version v);
void encode(std::string& out, const Pingreq& p, Version v);
void encode(std::string& out, const Pingresp& p, Version v);
void encode(std::string& out, const Disconnect& p, Version v);
void encode(std::string& out, const Auth& p, Version v);
void encode(std::string& out, const Packet& p, Version v);  // a Connect in its own version
std::string encode(const Packet& p, Version v);

}  // namespace converge::mqtt
