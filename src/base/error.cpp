#include "base/error.hpp"

namespace converge {

std::string_view errc_name(Errc c) {
  switch (c) {
    case Errc::bad_json:
      return "bad_json";
    case Errc::bad_request:
      return "bad_request";
    case Errc::unknown_cmd:
      return "unknown_cmd";
    case Errc::unauthorized:
      return "unauthorized";
    case Errc::forbidden:
      return "forbidden";
    case Errc::not_found:
      return "not_found";
    case Errc::conflict:
      return "conflict";
    case Errc::room_full:
      return "room_full";
    case Errc::too_large:
      return "too_large";
    case Errc::rate_limited:
      return "rate_limited";
    case Errc::unavailable:
      return "unavailable";
    case Errc::internal:
      return "internal";
  }
  return "internal";
}

int errc_http_status(Errc c) {
  switch (c) {
    case Errc::bad_json:
    case Errc::bad_request:
    case Errc::unknown_cmd:
      return 400;
    case Errc::unauthorized:
      return 401;
    case Errc::forbidden:
      return 403;
    case Errc::not_found:
      return 404;
    case Errc::conflict:
    case Errc::room_full:
      return 409;
    case Errc::too_large:
      return 413;
    case Errc::rate_limited:
      return 429;
    case Errc::unavailable:
      return 503;
    case Errc::internal:
      return 500;
  }
  return 500;
}

}  // namespace converge

namespace converge {

Error public_error(const Error& e) {
  auto from_store = [&](std::string_view m) {
    for (std::string_view p : {"postgres", "cannot connect to PostgreSQL", "sqlite", "store"})
      if (m.substr(0, p.size()) == p) return true;
    return false;
  };
  if (e.code == Errc::internal) return Error{e.code, "internal error (the node logged it)", 0};
  if (e.code == Errc::unavailable && from_store(e.message))
    return Error{e.code, "the store is unavailable; try again", e.retry_after_s};
  return e;
}

}  // namespace converge
