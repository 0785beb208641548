#pragma once
// The project's own WebSocket client (RFC 6455, client side), on the same framing code as the
// server. Used by converge-bench and by anything in this repository that talks to a node from C++.
// A client lives on one io_context and must be used from that context's thread.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace converge::client {

class WsClient {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    uint16_t port = 0;
    std::string path = "/ws";   // with the query, e.g. /ws?token=...
    std::string local_address;  // bind the source address (spreads load over 127.0.0.x)
    std::size_t max_message_bytes = 16 << 20;
    std::vector<std::pair<std::string, std::string>> headers;  // extra upgrade request headers
  };
  struct Handlers {
    std::function<void()> on_open;
    std::function<void(std::string_view)> on_text;
    std::function<void(std::string_view)> on_binary;
    // Once per client: the peer's close code, or 1006 when the connection failed or dropped.
    std::function<void(uint16_t code, std::string reason)> on_close;
  };

  static std::shared_ptr<WsClient> create(boost::asio::io_context& io, Options opts,
                                          Handlers handlers);
  virtual ~WsClient() = default;

  virtual void connect() = 0;
  virtual void send_text(std::string_view payload) = 0;
  virtual void send_binary(std::string_view payload) = 0;
  virtual void close(uint16_t code = 1000) = 0;
  virtual std::size_t queued_bytes() const = 0;
};

}  // namespace converge::client
