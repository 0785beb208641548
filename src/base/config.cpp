#include "base/config.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>

#include "base/rate_limit.hpp"

namespace converge {

namespace {

Status parse_int(std::string_view v, int64_t& out) {
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc{} || p != v.data() + v.size())
    return make_error(Errc::bad_request, "not an integer: " + std::string(v));
  return ok_status();
}

ConfigKey str_key(std::string key, std::string help, std::string Config::*m) {
  return {std::move(key), std::move(help),
          [m](Config& c, std::string_view v) {
            c.*m = std::string(v);
            return ok_status();
          },
          [m](const Config& c) { return c.*m; }};
}

template <class I>
ConfigKey int_key(std::string key, std::string help, I Config::*m, int64_t min) {
  return {key, std::move(help),
          [m, min, key](Config& c, std::string_view v) -> Status {
            int64_t n = 0;
            if (auto s = parse_int(v, n); !s) return s;
            if (n < min)
              return make_error(Errc::bad_request, key + " must be >= " + std::to_string(min));
            c.*m = static_cast<I>(n);
            return ok_status();
          },
          [m](const Config& c) { return std::to_string(c.*m); }};
}

ConfigKey bool_key(std::string key, std::string help, bool Config::*m) {
  return {key, std::move(help),
          [m](Config& c, std::string_view v) -> Status {
            if (v == "true" || v == "1" || v == "yes" || v == "on") {
              c.*m = true;
            } else if (v == "false" || v == "0" || v == "no" || v == "off") {
              c.*m = false;
            } else {
              return make_error(Errc::bad_request, "expected true or false, got " + std::string(v));
            }
            return ok_status();
          },
          [m](const Config& c) { return std::string(c.*m ? "true" : "false"); }};
}

ConfigKey rate_key(std::string key, std::string help, std::string Config::*m) {
  return {key, std::move(help),
          [m](Config& c, std::string_view v) -> Status {
            if (auto r = parse_rate(v); !r) return r.error();
            c.*m = std::string(v);
            return ok_status();
          },
          [m](const Config& c) { return c.*m; }};
}

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  auto e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

}  // namespace

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = {
      str_key("listen", "HTTP API and WebSocket address, HOST:PORT", &Config::listen),
      str_key("data_dir", "folder for the SQLite database and uploaded files", &Config::data_dir),
      str_key("files_dir",
              "folder of uploaded files; empty = data_dir/files (nodes of a cluster share one)",
              &Config::files_dir),
      str_key("node_id", "this node's id in a cluster (1-64 of a-z 0-9 _ . -); empty = random",
              &Config::node_id),
      str_key("node_address",
              "the URL clients reach this node at, as other nodes list it; empty = http://<listen>",
              &Config::node_address),
      str_key("mqtt_listen", "MQTT over TCP, HOST:PORT; empty or off = no TCP listener",
              &Config::mqtt_listen),
      bool_key("mqtt_allow_anonymous",
               "MQTT clients without a username may connect (general topics, by the ACL)",
               &Config::mqtt_allow_anonymous),
      str_key("mqtt_acl_file",
              "MQTT ACL, mosquitto acl_file format; empty = app/<user>/# and read app/public/#",
              &Config::mqtt_acl_file),
      int_key("mqtt_max_keepalive", "largest MQTT keepalive granted, seconds; 0 = no cap",
              &Config::mqtt_max_keepalive, 0),
      int_key("mqtt_max_packet_bytes", "largest MQTT packet; larger closes the connection",
              &Config::mqtt_max_packet_bytes, 64),
      int_key("mqtt_max_queued_messages",
              "MQTT messages queued per session (offline, or past its inflight window)",
              &Config::mqtt_max_queued_messages, 1),
      int_key("mqtt_connect_timeout_ms", "an MQTT connection must CONNECT within this",
              &Config::mqtt_connect_timeout_ms, 100),
      str_key("mqtt_port_file", "write the bound MQTT TCP port to this file",
              &Config::mqtt_port_file),
      str_key("store", "store URL; empty = SQLite in data_dir", &Config::store),
      str_key("bus", "bus URL; empty = in-process", &Config::bus),
      str_key("registration", "open | admin-only", &Config::registration),
      str_key("admin_user", "admin user id created at start (with admin_password)",
              &Config::admin_user),
      str_key("admin_password", "password of admin_user", &Config::admin_password),
      str_key("password_cost", "argon2id cost: interactive | min (tests only)",
              &Config::password_cost),
      str_key("log_level", "trace | debug | info | warn | error", &Config::log_level),
      str_key("sqlite_synchronous", "normal | full", &Config::sqlite_synchronous),
      str_key("port_file", "write the bound HTTP port to this file", &Config::port_file),
      str_key("web_root", "folder of the web client served at /", &Config::web_root),
      str_key("ws_echo_path",
              "conformance tests only: a WebSocket path that echoes without authentication",
              &Config::ws_echo_path),
      int_key("threads", "network threads; 0 = one per core", &Config::threads, 0),
      int_key("token_ttl_s", "token lifetime in seconds", &Config::token_ttl_s, 1),
      int_key("heartbeat_interval_ms", "heartbeat interval advised to clients",
              &Config::heartbeat_interval_ms, 100),
      int_key("heartbeat_timeout_ms", "close a connection silent for this long",
              &Config::heartbeat_timeout_ms, 100),
      int_key("max_frame_bytes", "largest WebSocket message", &Config::max_frame_bytes, 1024),
      int_key("max_body_bytes", "largest message body", &Config::max_body_bytes, 16),
      int_key("max_http_body_bytes", "largest JSON request body", &Config::max_http_body_bytes,
              1024),
      int_key("max_file_bytes", "largest upload", &Config::max_file_bytes, 1),
      int_key("max_send_queue_bytes", "per-connection send queue limit",
              &Config::max_send_queue_bytes, 4096),
      int_key("sync_page_max", "most messages per offline/sync/history page",
              &Config::sync_page_max, 1),
      int_key("store_batch_max", "most jobs per group commit", &Config::store_batch_max, 1),
      int_key("shutdown_grace_ms", "time allowed to flush connections at stop",
              &Config::shutdown_grace_ms, 0),
      rate_key("rate_login_user", "failed logins per user id, N/S seconds (0 = off)",
               &Config::rate_login_user),
      rate_key("rate_login_address", "failed logins per source address, N/S seconds",
               &Config::rate_login_address),
      rate_key("rate_register_address", "registrations per source address, N/S seconds",
               &Config::rate_register_address),
      rate_key("rate_conversations_user", "conversations created per user, N/S seconds",
               &Config::rate_conversations_user),
      rate_key("rate_members_user", "members added per user, N/S seconds",
               &Config::rate_members_user),
      int_key("node_heartbeat_ms", "how often a node tells the others it is alive",
              &Config::node_heartbeat_ms, 50),
      int_key("node_timeout_ms",
              "a node silent this long is taken for dead (its users' streams catch up)",
              &Config::node_timeout_ms, 100),
      int_key("max_groups_per_user", "groups one user may be a member of",
              &Config::max_groups_per_user, 1),
      int_key("max_group_members", "members one group may have", &Config::max_group_members, 2),
      int_key("request_ttl_s",
              "seconds a join application, invitation or friend request stays pending",
              &Config::request_ttl_s, 1),
      int_key("voice_max_frames_per_s",
              "audio frames per second a voice room member may send (more are dropped)",
              &Config::voice_max_frames_per_s, 1),
      int_key("voice_max_delay_ms",
              "an audio frame waiting longer than this for a slow listener is dropped",
              &Config::voice_max_delay_ms, 20),
      int_key("voice_max_members", "the largest max_members a voice room may ask for",
              &Config::voice_max_members, 1),
      rate_key("rate_requests_user",
               "applications, invitations and friend requests made per user, N/S seconds",
               &Config::rate_requests_user),
      int_key("auth_threads", "threads that hash passwords (logins, registrations)",
              &Config::auth_threads, 1),
      int_key("auth_queue_max", "logins waiting for a hashing thread before 429",
              &Config::auth_queue_max, 1),
      str_key("push_webhook_url", "offline push: POST pushes to this http:// URL (empty = no push)",
              &Config::push_webhook_url),
      str_key("push_webhook_secret",
              "offline push: HMAC-SHA256 key of X-Converge-Signature (16 bytes at least)",
              &Config::push_webhook_secret),
      int_key("push_retry_max", "offline push: tries per push before it is a dead letter",
              &Config::push_retry_max, 1),
      int_key("push_retry_base_ms", "offline push: wait after a first failed try (doubling)",
              &Config::push_retry_base_ms, 1),
      int_key("push_retry_cap_ms", "offline push: longest wait between two tries",
              &Config::push_retry_cap_ms, 1),
      int_key("push_timeout_ms", "offline push: time allowed for one POST",
              &Config::push_timeout_ms, 10),
      int_key("push_batch_max", "offline push: pushes per POST", &Config::push_batch_max, 1),
      int_key("push_batch_ms", "offline push: how long a message waits to share a POST",
              &Config::push_batch_ms, 0),
      int_key("push_queue_max", "offline push: messages queued in memory for the push worker",
              &Config::push_queue_max, 1),
      int_key("push_preview_chars", "offline push: characters of the body in a preview",
              &Config::push_preview_chars, 0),
  };
  return keys;
}

Status config_set(Config& cfg, std::string_view key, std::string_view value) {
  for (auto& k : config_keys())
    if (k.key == key) {
      auto s = k.set(cfg, value);
      if (!s) return make_error(s.error().code, std::string(key) + ": " + s.error().message);
      return s;
    }
  return make_error(Errc::bad_request, "unknown configuration key: " + std::string(key));
}

Status config_load_file(Config& cfg, const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(Errc::not_found, "cannot read config file " + path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    auto t = trim(line);
    if (t.empty()) continue;
    auto eq = t.find('=');
    if (eq == std::string::npos)
      return make_error(Errc::bad_request,
                        path + ":" + std::to_string(n) + ": expected key = value");
    auto key = trim(std::string_view(t).substr(0, eq));
    auto val = trim(std::string_view(t).substr(eq + 1));
    if (val.size() >= 2 && val.front() == '"' && val.back() == '"')
      val = val.substr(1, val.size() - 2);
    if (auto s = config_set(cfg, key, val); !s)
      return make_error(Errc::bad_request,
                        path + ":" + std::to_string(n) + ": " + s.error().message);
  }
  return ok_status();
}

Status config_load_env(Config& cfg, const std::function<const char*(const char*)>& getenv_fn) {
  for (auto& k : config_keys()) {
    std::string name = "CONVERGE_";
    for (char c : k.key) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (const char* v = getenv_fn(name.c_str()); v != nullptr)
      if (auto s = k.set(cfg, v); !s)
        return make_error(Errc::bad_request, name + ": " + s.error().message);
  }
  return ok_status();
}

Status split_host_port(std::string_view s, std::string& host, uint16_t& port) {
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return make_error(Errc::bad_request, "expected HOST:PORT, got " + std::string(s));
  int64_t p = 0;
  if (!parse_int(s.substr(colon + 1), p) || p < 0 || p > 65535)
    return make_error(Errc::bad_request, "bad port in " + std::string(s));
  host = std::string(s.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  port = static_cast<uint16_t>(p);
  return ok_status();
}

bool mqtt_tcp_enabled(const Config& cfg) {
  return !cfg.mqtt_listen.empty() && cfg.mqtt_listen != "off";
}

Status config_validate(const Config& cfg) {
  std::string h;
  uint16_t p = 0;
  if (auto s = split_host_port(cfg.listen, h, p); !s)
    return make_error(Errc::bad_request, "listen: " + s.error().message);
  if (mqtt_tcp_enabled(cfg))
    if (auto s = split_host_port(cfg.mqtt_listen, h, p); !s)
      return make_error(Errc::bad_request, "mqtt_listen: " + s.error().message);
  if (cfg.mqtt_max_keepalive > 65535)
    return make_error(Errc::bad_request, "mqtt_max_keepalive must be at most 65535 seconds");
  // MQTT's remaining length tops out at 268,435,455 bytes (plus the fixed header).
  if (cfg.mqtt_max_packet_bytes > 268435455 + 5)
    return make_error(Errc::bad_request, "mqtt_max_packet_bytes must be at most 268435460");
  if (cfg.registration != "open" && cfg.registration != "admin-only")
    return make_error(Errc::bad_request, "registration must be open or admin-only");
  if (cfg.password_cost != "interactive" && cfg.password_cost != "min")
    return make_error(Errc::bad_request, "password_cost must be interactive or min");
  if (cfg.sqlite_synchronous != "normal" && cfg.sqlite_synchronous != "full")
    return make_error(Errc::bad_request, "sqlite_synchronous must be normal or full");
  if (cfg.admin_user.empty() != cfg.admin_password.empty())
    return make_error(Errc::bad_request, "admin_user and admin_password go together");
  // (MQTT connections' queues are at least twice mqtt_max_packet_bytes whatever this says:
  // app/main.cpp.)
  if (cfg.max_send_queue_bytes < 2 * std::max(cfg.max_frame_bytes, cfg.max_http_body_bytes))
    return make_error(Errc::bad_request,
                      "max_send_queue_bytes must be at least twice max_frame_bytes and "
                      "max_http_body_bytes (a queue holds the largest frame it may be sent)");
  if (cfg.max_body_bytes >= cfg.max_frame_bytes)
    return make_error(Errc::bad_request, "max_body_bytes must be below max_frame_bytes");
  // A push is signed, always: the receiver must be able to tell the node's POSTs from anyone's.
  // (The URL itself is checked by the webhook client, app/main.cpp.)
  if (!cfg.push_webhook_url.empty() && cfg.push_webhook_secret.size() < 16)
    return make_error(Errc::bad_request,
                      "push_webhook_secret must be at least 16 bytes when push_webhook_url is set");
  if (cfg.push_batch_max > 1000)
    return make_error(Errc::bad_request, "push_batch_max must be at most 1000");
  if (cfg.push_retry_cap_ms < cfg.push_retry_base_ms)
    return make_error(Errc::bad_request, "push_retry_cap_ms must be at least push_retry_base_ms");
  return ok_status();
}

}  // namespace converge
