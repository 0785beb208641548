#pragma once
// HTTP API, WebSocket and static files on one port (DESIGN.md section 3).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/error.hpp"
#include "gateway/http/api.hpp"

namespace converge::mqtt {
class Link;
class Client;
}  // namespace converge::mqtt

namespace converge {

class Service;
class Hub;
class IoPool;
struct Metrics;

struct HttpServerOptions {
  ApiOptions api;
  std::size_t max_http_body_bytes = 1 << 20;
  std::size_t max_file_bytes = 25 << 20;
  std::size_t max_frame_bytes = 1 << 20;
  std::size_t max_send_queue_bytes = 8 << 20;
  int64_t heartbeat_timeout_ms = 90000;
  int64_t voice_max_delay_ms = 200;  // audio frames queued longer than this for a listener go
  std::string web_root;              // static web client; empty = none
  std::string data_dir;              // never served by the static route, whatever web_root is
  // When set, a WebSocket on this path echoes every message without authentication: the
  // endpoint conformance suites (Autobahn) drive. Off by default; never for production.
  std::string ws_echo_path;
  // MQTT over WebSocket at /mqtt, subprotocol "mqtt" (gateway/http/mqtt_ws_session.cpp): each
  // upgraded connection is an mqtt::Link handed to this (the broker's accept). Empty: /mqtt is
  // not served (404).
  std::function<std::shared_ptr<mqtt::Client>(std::shared_ptr<mqtt::Link>)> mqtt_accept;
  // Largest WebSocket message on /mqtt (a message may carry several MQTT packets, or a part of
  // one: the broker's codec applies the packet limit).
  std::size_t mqtt_max_message_bytes = 2 << 20;
  std::size_t mqtt_max_send_queue_bytes = 8 << 20;  // an MQTT connection past this is cut
  int64_t mqtt_connect_timeout_ms = 10000;          // CONNECT handled within this of the upgrade
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions opts, Service& svc, Hub& hub, IoPool& io, Metrics& metrics);
  ~HttpServer();

  Status listen(const std::string& host, uint16_t port);
  uint16_t port() const;
  // Graceful stop: no new connections; open ones finish what they are writing and close
  // (WebSocket: close frame 1001). Returns when all are gone or `grace_ms` passed.
  void shutdown(int64_t grace_ms);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace converge
