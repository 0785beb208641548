#pragma once
// RFC 6455 framing for the server side, free of sockets: an incremental parser of client frames
// and the encoder of server frame headers. Our own framing (rather than Beast's stream) lets a
// session gather many queued frames into one write, each payload a shared buffer that was
// serialized once for every recipient.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/utf8.hpp"

namespace converge::ws {

enum Opcode : uint8_t { cont = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA };

// Close codes (RFC 6455 section 7.4, plus ours in 4000-4999).
enum CloseCode : uint16_t {
  normal = 1000,
  going_away = 1001,
  protocol_error = 1002,
  unsupported = 1003,
  bad_payload = 1007,
  policy = 1008,
  too_big = 1009,
  internal_error = 1011,
  heartbeat_timeout = 4000,
  unauthorized = 4001,
};

// Writes the header of an unmasked server frame into `out` (at most 10 bytes); returns its size.
std::size_t encode_header(uint8_t* out, Opcode op, std::size_t payload_len, bool fin = true);

// A client frame: header with `mask`, then the payload XORed with it (RFC 6455 section 5.3).
std::string encode_client_frame(Opcode op, std::string_view payload, const uint8_t mask[4]);

// Whether a peer may send `code` in a close frame (RFC 6455 section 7.4: 1000-1003, 1007-1014
// as registered with IANA, 3000-4999; never 1004-1006, 1015 or outside those ranges).
bool valid_close_code(uint16_t code);

// A close frame's payload: the code, then a UTF-8 reason of at most 123 bytes.
std::string close_payload(uint16_t code, std::string_view reason);

// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key.
std::string accept_key(std::string_view client_key);

// Feeds on client bytes and calls back per complete message or control frame.
class FrameParser {
 public:
  struct Handler {
    virtual ~Handler() = default;
    virtual void on_message(Opcode op, std::string_view payload) = 0;  // text or binary
    virtual void on_ping(std::string_view payload) = 0;
    virtual void on_close(uint16_t code, std::string_view reason) = 0;
  };

  enum class Side { server, client };  // a server reads masked frames, a client unmasked ones
  explicit FrameParser(std::size_t max_message_bytes, Side side = Side::server)
      : max_message_(max_message_bytes), side_(side) {}

  // Consumes what it can of `data`; returns how many bytes were used (the rest is an incomplete
  // frame header: feed it again with more bytes). On a protocol violation returns 0 and sets
  // failed(): the caller closes with failure_code() — 1002 for framing, 1007 for a text message
  // or close reason that is not UTF-8 (checked as the bytes arrive, so a fragmented message
  // fails at its first bad fragment), 1009 for size. The server side validates UTF-8; the client
  // side trusts the server's frames.
  std::size_t feed(const uint8_t* data, std::size_t size, Handler& h);
  bool failed() const { return fail_code_ != 0; }
  uint16_t failure_code() const { return fail_code_; }
  const char* failure_reason() const { return fail_reason_; }

 private:
  std::size_t fail(uint16_t code, const char* why) {
    fail_code_ = code;
    fail_reason_ = why;
    return 0;
  }

  void unmask(char* p, std::size_t n) const;

  const std::size_t max_message_;
  const Side side_;
  // The frame being read.
  bool in_frame_ = false;
  bool fin_ = false;
  uint8_t opcode_ = 0;
  uint8_t mask_[4] = {};
  bool masked_ = false;
  uint64_t remaining_ = 0;  // payload bytes of this frame still to come
  uint64_t offset_ = 0;     // payload bytes of this frame already unmasked (mask phase)
  std::string control_;     // payload of a control frame being read
  // The fragmented message being assembled.
  uint8_t msg_opcode_ = 0;  // 0 = none in progress
  std::string message_;
  Utf8Validator utf8_;  // over the text message being assembled
  uint16_t fail_code_ = 0;
  const char* fail_reason_ = "";
};

}  // namespace converge::ws
