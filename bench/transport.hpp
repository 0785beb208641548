#pragma once
// The wires the generator speaks: WebSocket (the project's client), a bare length-prefixed TCP
// stream (for the ceiling) and a raw TCP stream (MQTT, which frames itself). Protocols sit on
// top of them (targets.hpp).
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace converge::bench {

class Conn {
 public:
  struct Handlers {
    std::function<void()> on_open;
    std::function<void(std::string_view)> on_message;
    std::function<void(uint16_t code, const std::string& why)> on_close;
  };
  virtual ~Conn() = default;
  virtual void start() = 0;
  virtual void send(std::string_view payload) = 0;
  // A binary message (WebSocket); the streams have no other kind.
  virtual void send_binary(std::string_view payload) { send(payload); }
  virtual void close() = 0;
};

std::shared_ptr<Conn> make_ws_conn(boost::asio::io_context& io, const std::string& host,
                                   uint16_t port, const std::string& path,
                                   const std::string& local_address, Conn::Handlers h);
// Frames are [u32 big-endian length][payload].
std::shared_ptr<Conn> make_tcp_conn(boost::asio::io_context& io, const std::string& host,
                                    uint16_t port, const std::string& local_address,
                                    Conn::Handlers h);
// A raw stream: send() writes the bytes as they are, on_message gets each read's bytes (any
// split: the protocol on top finds its own frames).
std::shared_ptr<Conn> make_stream_conn(boost::asio::io_context& io, const std::string& host,
                                       uint16_t port, const std::string& local_address,
                                       Conn::Handlers h);

}  // namespace converge::bench
