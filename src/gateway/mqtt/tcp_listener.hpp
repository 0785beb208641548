#pragma once
// MQTT over plain TCP (DESIGN.md section 3, key `mqtt_listen`): an acceptor whose connections
// are pinned one each to an IoPool loop, round robin, as the HTTP server's are. Each connection
// is an mqtt::Link (broker.hpp) handed to `accept`, which returns the broker's Client for it.
// Asio stays in tcp_listener.cpp.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/error.hpp"

namespace converge {
class IoPool;
struct Metrics;
}  // namespace converge

namespace converge::mqtt {

class Link;
class Client;

// What the transports (TCP here, WebSocket in the HTTP server) hand a new connection to:
// Broker::accept, bound by the composition root.
using AcceptFn = std::function<std::shared_ptr<Client>(std::shared_ptr<Link>)>;

struct TcpListenerOptions {
  // A connection that has not had its CONNECT handled (Link::set_idle_timeout not yet called)
  // this long after it was accepted is closed, however many bytes it dribbles meanwhile.
  std::chrono::milliseconds connect_timeout{10000};
  // Bytes queued for a connection and not yet written past which it is cut at once (the broker
  // applies its own, lower slow-consumer policy through Link::queued_bytes; this is the
  // backstop). Config max_send_queue_bytes.
  std::size_t max_queued_bytes = 8 << 20;
};

class TcpListener {
 public:
  TcpListener(TcpListenerOptions opts, AcceptFn accept, IoPool& io, Metrics& metrics);
  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  Status listen(const std::string& host, uint16_t port);
  uint16_t port() const;  // the bound port (for `host:0`), 0 before listen
  // No new connections. The broker's stop() then closes the clients it has.
  void stop_accepting();
  // stop_accepting(), then every open connection flushes what it has queued and closes; returns
  // when all are gone or `grace_ms` passed (the rest are cut then).
  void shutdown(int64_t grace_ms);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace converge::mqtt
