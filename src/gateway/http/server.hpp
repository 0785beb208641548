#pragma once
// HTTP API, WebSocket and static files on one port (DESIGN.md section 3).
#include <cstdint>
#include <memory>
#include <string>

#include "base/error.hpp"
#include "gateway/http/api.hpp"

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
  std::string web_root;  // static web client; empty = none
  std::string data_dir;  // never served by the static route, whatever web_root is
  // When set, a WebSocket on this path echoes every message without authentication: the
  // endpoint conformance suites (Autobahn) drive. Off by default; never for production.
  std::string ws_echo_path;
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
