#pragma once
// The MQTT data representations (MQTT 5 section 1.5, the same in 3.1.1): one-, two- and
// four-byte big-endian integers, the variable byte integer, UTF-8 strings and binary data, each
// string prefixed with its 16-bit length. A Reader over the bytes of one packet reports errors
// as values and never reads past its end; a Writer appends to a std::string, and a Sizer counts
// what a Writer would write, so that an encoder knows the remaining length before writing.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace converge::mqtt {

// The largest variable byte integer (4 bytes of 7 bits): also the largest remaining length.
inline constexpr uint32_t kMaxVarint = 268'435'455;
// The largest whole packet: a one-byte type, a 4-byte remaining length and its content.
inline constexpr std::size_t kMaxPacketBytes = 1 + 4 + std::size_t{kMaxVarint};
// The longest UTF-8 string or binary data (16-bit length prefix).
inline constexpr std::size_t kMaxStringBytes = 65535;

// Why bytes are not a valid packet: an MQTT 5 reason code (reason_codes.hpp: 0x81 malformed,
// 0x82 protocol error, 0x84 unsupported version, 0x90 topic name invalid, 0x94 topic alias
// invalid, 0x95 packet too large) and a short message for the log.
struct DecodeError {
  uint8_t reason_code = 0x81;
  std::string message;
};

namespace wire {

// The bytes a variable byte integer takes on the wire (1..4; `v` at most kMaxVarint).
constexpr std::size_t varint_size(uint32_t v) {
  return v < 128 ? 1 : v < 16'384 ? 2 : v < 2'097'152 ? 3 : 4;
}

// MQTT's rule for a UTF-8 string (MQTT 5 section 1.5.4): well-formed UTF-8 without U+0000.
bool string_valid(std::string_view s);

// Reads the fields of one packet body. Every read returns false once the reader has failed
// (truncated input, a non-minimal or 5-byte varint, a string that is not MQTT UTF-8); the first
// failure is kept in error(). Decoders fail it themselves with fail() for semantic errors.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : in_(bytes) {}

  bool u8(uint8_t& v);
  bool u16(uint16_t& v);
  bool u32(uint32_t& v);
  bool varint(uint32_t& v);
  bool utf8(std::string& s);    // length-prefixed, checked with string_valid
  bool binary(std::string& s);  // length-prefixed, any bytes
  // The next `n` bytes, consumed (fails when fewer remain).
  bool take(std::size_t n, std::string_view& bytes);
  // Everything left, consumed.
  std::string_view rest();

  std::size_t remaining() const { return in_.size() - pos_; }
  bool empty() const { return remaining() == 0; }
  bool failed() const { return failed_; }
  const DecodeError& error() const { return error_; }
  // Records the error (the first one wins) and returns false, for `return r.fail(...)`.
  bool fail(uint8_t reason_code, std::string message);

 private:
  bool need(std::size_t n);

  std::string_view in_;
  std::size_t pos_ = 0;
  bool failed_ = false;
  DecodeError error_;
};

// Appends wire representations to `out`. Preconditions (asserted): strings and binary data at
// most kMaxStringBytes, varints at most kMaxVarint.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u16(uint16_t v);
  void u32(uint32_t v);
  void varint(uint32_t v);
  void utf8(std::string_view s) { binary(s); }
  void binary(std::string_view s);
  void raw(std::string_view s) { out_.append(s); }

 private:
  std::string& out_;
};

// Counts the bytes the same calls on a Writer would append.
class Sizer {
 public:
  void u8(uint8_t) { size += 1; }
  void u16(uint16_t) { size += 2; }
  void u32(uint32_t) { size += 4; }
  void varint(uint32_t v) { size += varint_size(v); }
  void utf8(std::string_view s) { size += 2 + s.size(); }
  void binary(std::string_view s) { size += 2 + s.size(); }
  void raw(std::string_view s) { size += s.size(); }

  std::size_t size = 0;
};

}  // namespace wire
}  // namespace converge::mqtt
