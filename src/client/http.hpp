#pragma once
// A small blocking HTTP/1.1 client for set-up calls (register, login, create conversations).
#include <cstdint>
#include <string>

#include "base/error.hpp"

namespace converge::client {

struct HttpResult {
  int status = 0;
  std::string body;
};

Result<HttpResult> http_call(const std::string& host, uint16_t port, const std::string& method,
                             const std::string& target, const std::string& body,
                             const std::string& token = "");

}  // namespace converge::client
