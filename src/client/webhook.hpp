#pragma once
// The push webhook's HTTP client (service/push.hpp's PushPost): one POST per call, on a
// connection of its own, bounded by one deadline from name lookup to the last byte of the
// answer. Plain http:// only (docs/configuration.md: a TLS-terminating relay on the node's host
// for https). The answer's body is read up to 64 KiB and dropped: only its status counts.
#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.hpp"

namespace converge::client {

struct WebhookUrl {
  std::string host;    // a name or an address (IPv6 without brackets)
  uint16_t port = 80;  // 80 unless the URL names one
  std::string target;  // path and query, "/" at least
  std::string host_header;
};
// http://host[:port][/path][?query]; anything else (https, user info, a fragment, spaces or
// control characters) is bad_request.
Result<WebhookUrl> parse_webhook_url(std::string_view url);

struct WebhookAnswer {
  int status = 0;     // the HTTP status, 0 when none came
  std::string error;  // "timeout", "connect: ...", ...; empty when a status came
};

class WebhookClient {
 public:
  WebhookClient(WebhookUrl url, int64_t timeout_ms, std::string user_agent)
      : url_(std::move(url)), timeout_ms_(timeout_ms), user_agent_(std::move(user_agent)) {}
  // POSTs `body` as application/json with X-Converge-Signature: `signature`.
  WebhookAnswer post(const std::string& body, const std::string& signature) const;

 private:
  WebhookUrl url_;
  int64_t timeout_ms_;
  std::string user_agent_;
};

}  // namespace converge::client
