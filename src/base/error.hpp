#pragma once
// One error vocabulary for the whole node. Each edge maps it: HTTP status, WebSocket error frame,
// MQTT reason code. Errors are values at module boundaries (Result<T>); exceptions never cross
// a completion handler.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace converge {

enum class Errc {
  bad_json,      // the input is not JSON / not a JSON object
  bad_request,   // a field is missing, of the wrong type or out of range
  unknown_cmd,   // the envelope names a command this node does not know
  unauthorized,  // missing, bad or expired token / credentials
  forbidden,     // authenticated, but not allowed (not a member, not an admin, ...)
  not_found,     // the named user, conversation or file does not exist
  conflict,      // it exists already (user id taken)
  room_full,     // a voice room has max_members members already (HTTP 409)
  too_large,     // body, frame or field over its configured limit
  rate_limited,  // too many calls of this kind from this user or address: retry later
  unavailable,   // shutting down or overloaded
  internal,      // a bug or a storage failure
};

std::string_view errc_name(Errc c);
int errc_http_status(Errc c);

struct Error {
  Errc code = Errc::internal;
  std::string message;
  int64_t retry_after_s = 0;  // rate_limited: when to try again (HTTP Retry-After), else 0
};

inline Error make_error(Errc c, std::string msg) {
  return Error{c, std::move(msg), 0};
}

// A small expected<T, Error>; std::expected is C++23.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::move(v)) {}      // NOLINT(google-explicit-constructor)
  Result(Error e) : v_(std::move(e)) {}  // NOLINT(google-explicit-constructor)
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// What a client may be told of an error: the code, and the message unless it describes the
// node's insides (a storage failure names the database's host, port and SQL): then a generic
// one. The full error is for the node's log.
Error public_error(const Error& e);

struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() {
  return Ok{};
}

}  // namespace converge
