#pragma once
// The HTTP JSON API of DESIGN.md section 3, free of any socket or Beast type: the server turns a
// parsed request into an ApiRequest, runs handle_api() on the work pool, and writes the
// ApiResponse.
#include <map>
#include <string>
#include <string_view>

#include "base/error.hpp"

namespace converge {

class Service;
class Rooms;
struct Metrics;

struct ApiRequest {
  std::string method;         // GET, POST, DELETE, ...
  std::string target;         // path and query as received
  std::string authorization;  // Authorization header
  std::string content_type;
  std::string body;
  std::string remote_address;  // the peer's IP address, for per-address limits
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string file_path;  // when set, the body is this file (downloads)
  std::map<std::string, std::string> headers;
};

struct ApiOptions {
  int64_t heartbeat_interval_ms = 30000;
  int64_t heartbeat_timeout_ms = 90000;
  std::size_t max_body_bytes = 64 << 10;  // message body
  Rooms* rooms = nullptr;                 // voice rooms (/api/v1/rooms); none: 404
};

// Blocking: call on the work pool.
ApiResponse handle_api(Service& svc, const ApiOptions& opts, const ApiRequest& req);

// Cheap endpoints answered on the network thread.
// 200 {"status":"ok"} while the node has its broker and its store; 503 with what is lost
// otherwise (a load balancer then sends new clients elsewhere).
ApiResponse handle_healthz(const std::string& node_id, bool bus_connected, bool store_ok);
ApiResponse handle_metrics(const Metrics& metrics);
ApiResponse api_error(int status, const char* code, const std::string& message);
ApiResponse error_response(const Error& e);

// Calls that hash a password (login, registration, password change): the server runs them on
// the service's bounded auth pool instead of the work pool.
bool api_hashes_password(std::string_view method, std::string_view path);

}  // namespace converge
