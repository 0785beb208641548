#include "gateway/mqtt/codec/wire.hpp"

#include <cassert>
#include <utility>

#include "base/utf8.hpp"
#include "gateway/mqtt/codec/reason_codes.hpp"

namespace converge::mqtt::wire {

bool string_valid(std::string_view s) {
  // Strict UTF-8 never encodes U+0000 other than as the byte 0x00 (overlong forms are invalid).
  return s.find('\0') == std::string_view::npos && converge::utf8_valid(s);
}

bool Reader::fail(uint8_t reason_code, std::string message) {
  if (!failed_) {
    failed_ = true;
    error_ = DecodeError{reason_code, std::move(message)};
  }
  return false;
}

bool Reader::need(std::size_t n) {
  if (failed_) return false;
  if (remaining() < n) return fail(reason::malformed_packet, "packet shorter than its fields");
  return true;
}

bool Reader::u8(uint8_t& v) {
  if (!need(1)) return false;
  v = static_cast<uint8_t>(in_[pos_++]);
  return true;
}

bool Reader::u16(uint16_t& v) {
  if (!need(2)) return false;
  v = static_cast<uint16_t>((static_cast<uint8_t>(in_[pos_]) << 8) |
                            static_cast<uint8_t>(in_[pos_ + 1]));
  pos_ += 2;
  return true;
}

bool Reader::u32(uint32_t& v) {
  if (!need(4)) return false;
  v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in_[pos_++]);
  return true;
}

bool Reader::varint(uint32_t& v) {
  v = 0;
  for (int i = 0; i < 4; ++i) {
    if (!need(1)) return false;
    const auto b = static_cast<uint8_t>(in_[pos_++]);
    v |= static_cast<uint32_t>(b & 0x7F) << (7 * i);
    if ((b & 0x80) == 0) {
      // MQTT-1.5.5-1: the minimum number of bytes, so a last byte of 0 after others is refused.
      if (i > 0 && b == 0) return fail(reason::malformed_packet, "non-minimal variable integer");
      return true;
    }
  }
  return fail(reason::malformed_packet, "variable integer longer than 4 bytes");
}

bool Reader::take(std::size_t n, std::string_view& bytes) {
  if (!need(n)) return false;
  bytes = in_.substr(pos_, n);
  pos_ += n;
  return true;
}

bool Reader::binary(std::string& s) {
  uint16_t n = 0;
  std::string_view bytes;
  if (!u16(n) || !take(n, bytes)) return false;
  s.assign(bytes);
  return true;
}

bool Reader::utf8(std::string& s) {
  uint16_t n = 0;
  std::string_view bytes;
  if (!u16(n) || !take(n, bytes)) return false;
  if (!string_valid(bytes)) {
    return fail(reason::malformed_packet, "string is not UTF-8 or contains U+0000");
  }
  s.assign(bytes);
  return true;
}

std::string_view Reader::rest() {
  if (failed_) return {};
  std::string_view r = in_.substr(pos_);
  pos_ = in_.size();
  return r;
}

void Writer::u16(uint16_t v) {
  out_.push_back(static_cast<char>(v >> 8));
  out_.push_back(static_cast<char>(v & 0xFF));
}

void Writer::u32(uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out_.push_back(static_cast<char>(v >> shift));
}

void Writer::varint(uint32_t v) {
  assert(v <= kMaxVarint);
  do {
    auto b = static_cast<uint8_t>(v & 0x7F);
    v >>= 7;
    if (v != 0) b |= 0x80;
    out_.push_back(static_cast<char>(b));
  } while (v != 0);
}

void Writer::binary(std::string_view s) {
  assert(s.size() <= kMaxStringBytes);
  u16(static_cast<uint16_t>(s.size()));
  out_.append(s);
}

}  // namespace converge::mqtt::wire
