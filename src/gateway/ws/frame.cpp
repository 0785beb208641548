#include "gateway/ws/frame.hpp"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

namespace converge::ws {

std::size_t encode_header(uint8_t* out, Opcode op, std::size_t len, bool fin) {
  out[0] = static_cast<uint8_t>((fin ? 0x80 : 0) | op);
  if (len < 126) {
    out[1] = static_cast<uint8_t>(len);
    return 2;
  }
  if (len <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<uint8_t>(len >> 8);
    out[3] = static_cast<uint8_t>(len);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i)
    out[2 + i] = static_cast<uint8_t>(static_cast<uint64_t>(len) >> (56 - 8 * i));
  return 10;
}

std::string encode_client_frame(Opcode op, std::string_view payload, const uint8_t mask[4]) {
  uint8_t hdr[14];
  std::size_t n = encode_header(hdr, op, payload.size());
  hdr[1] |= 0x80;
  std::memcpy(hdr + n, mask, 4);
  n += 4;
  std::string out(reinterpret_cast<const char*>(hdr), n);
  out.resize(n + payload.size());
  for (std::size_t i = 0; i < payload.size(); ++i)
    out[n + i] = static_cast<char>(payload[i] ^ mask[i & 3]);
  return out;
}

bool valid_close_code(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

std::string close_payload(uint16_t code, std::string_view reason) {
  std::string p;
  p += static_cast<char>(code >> 8);
  p += static_cast<char>(code & 0xff);
  p += reason.substr(0, 123);
  return p;
}

std::string accept_key(std::string_view client_key) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string in(client_key);
  in += kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  unsigned char out[32];
  int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
}

// XORs with the frame's mask, continuing at payload offset offset_: eight bytes at a time.
void FrameParser::unmask(char* p, std::size_t n) const {
  uint8_t m[8];
  for (int i = 0; i < 8; ++i) m[i] = mask_[(offset_ + static_cast<uint64_t>(i)) & 3];
  uint64_t m64;
  std::memcpy(&m64, m, 8);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    w ^= m64;
    std::memcpy(p + i, &w, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<char>(p[i] ^ m[i & 7]);
}

std::size_t FrameParser::feed(const uint8_t* data, std::size_t size, Handler& h) {
  std::size_t used = 0;
  while (used < size) {
    if (!in_frame_) {
      // Header: 2 bytes, extended length, 4-byte mask (clients must mask).
      const uint8_t* p = data + used;
      std::size_t avail = size - used;
      if (avail < 2) break;
      bool fin = (p[0] & 0x80) != 0;
      if ((p[0] & 0x70) != 0) return fail(protocol_error, "reserved bits set");
      uint8_t op = p[0] & 0x0F;
      bool masked = (p[1] & 0x80) != 0;
      if (side_ == Side::server && !masked)
        return fail(protocol_error, "client frames must be masked");
      if (side_ == Side::client && masked)
        return fail(protocol_error, "server frames must not be masked");
      uint64_t len = p[1] & 0x7F;
      std::size_t hdr = 2;
      if (len == 126) {
        if (avail < 4) break;
        len = (uint64_t{p[2]} << 8) | p[3];
        hdr = 4;
      } else if (len == 127) {
        if (avail < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
        hdr = 10;
      }
      if (masked) {
        if (avail < hdr + 4) break;
        std::memcpy(mask_, p + hdr, 4);
        hdr += 4;
      } else {
        std::memset(mask_, 0, 4);
      }
      masked_ = masked;
      bool control = (op & 0x8) != 0;
      if (control) {
        if (!fin) return fail(protocol_error, "fragmented control frame");
        if (len > 125) return fail(protocol_error, "control frame too long");
        if (op != close && op != ping && op != pong) return fail(protocol_error, "unknown opcode");
        control_.clear();
      } else if (op == cont) {
        if (msg_opcode_ == 0) return fail(protocol_error, "continuation without a message");
      } else if (op == text || op == binary) {
        if (msg_opcode_ != 0) return fail(protocol_error, "new message inside a fragmented one");
        msg_opcode_ = op;
        message_.clear();
        utf8_.reset();
      } else {
        return fail(protocol_error, "unknown opcode");
      }
      if (!control && message_.size() + len > max_message_) return fail(too_big, "message too big");
      used += hdr;
      in_frame_ = true;
      fin_ = fin;
      opcode_ = op;
      remaining_ = len;
      offset_ = 0;
    }
    // A whole unmasked, unfragmented data frame in the input (what a client reads): handed over
    // where it lies, without a copy.
    if (fin_ && !masked_ && offset_ == 0 && !(opcode_ & 0x8) && opcode_ != cont &&
        remaining_ <= size - used) {
      const auto n = static_cast<std::size_t>(remaining_);
      std::string_view payload(reinterpret_cast<const char*>(data + used), n);
      used += n;
      in_frame_ = false;
      remaining_ = 0;
      auto op = static_cast<Opcode>(msg_opcode_);
      msg_opcode_ = 0;
      h.on_message(op, payload);
      continue;
    }
    // Payload: unmask into the message (or control) buffer.
    std::size_t take = static_cast<std::size_t>(std::min<uint64_t>(remaining_, size - used));
    std::string& dst = (opcode_ & 0x8) ? control_ : message_;
    std::size_t start = dst.size();
    dst.append(reinterpret_cast<const char*>(data + used), take);
    if (masked_) unmask(dst.data() + start, take);
    if (side_ == Side::server && !(opcode_ & 0x8) && msg_opcode_ == text &&
        !utf8_.feed(std::string_view(dst).substr(start)))
      return fail(bad_payload, "text is not UTF-8");
    offset_ += take;
    remaining_ -= take;
    used += take;
    if (remaining_ != 0) break;  // need more bytes
    in_frame_ = false;
    if (opcode_ & 0x8) {
      if (opcode_ == ping) {
        h.on_ping(control_);
      } else if (opcode_ == close) {
        uint16_t code = normal;
        std::string_view reason;
        if (control_.size() == 1) return fail(protocol_error, "bad close frame");
        if (control_.size() >= 2) {
          code = static_cast<uint16_t>((static_cast<uint8_t>(control_[0]) << 8) |
                                       static_cast<uint8_t>(control_[1]));
          reason = std::string_view(control_).substr(2);
          if (side_ == Side::server && !valid_close_code(code))
            return fail(protocol_error, "invalid close code");
          if (side_ == Side::server && !utf8_valid(reason))
            return fail(bad_payload, "close reason is not UTF-8");
        }
        h.on_close(code, reason);
        return used;  // nothing after a close counts
      }
      continue;  // pong: nothing to do
    }
    if (fin_) {
      auto op = static_cast<Opcode>(msg_opcode_);
      if (side_ == Side::server && op == text && !utf8_.complete())
        return fail(bad_payload, "text is not UTF-8");
      msg_opcode_ = 0;
      h.on_message(op, message_);
      message_.clear();
      if (message_.capacity() > (64 << 10)) message_.shrink_to_fit();  // one big message once
    }
  }
  return used;
}

}  // namespace converge::ws
