#pragma once
// Node configuration. Precedence: flags > environment (CONVERGE_<KEY>) > config file > defaults.
// Every key is listed once, in config_keys(); docs/configuration.md documents the same table.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"

namespace converge {

struct Config {
  std::string listen = "127.0.0.1:8080";  // HTTP API + WebSocket, HOST:PORT (port 0 = any free)
  std::string data_dir = "./data";        // SQLite database and file store
  std::string files_dir;     // uploaded files; empty = data_dir/files (a cluster shares one)
  std::string node_id;       // this node's name in a cluster; empty = made up at start
  std::string node_address;  // the URL clients reach this node at; empty = http://<listen>
  int64_t node_heartbeat_ms = 1000;  // how often a node tells the others it is alive
  int64_t node_timeout_ms = 5000;    // a node silent this long is taken for dead

  // MQTT (gateway/mqtt): the broker's keys.
  std::string mqtt_listen = "127.0.0.1:1883";  // MQTT over TCP; empty or "off" = none
  bool mqtt_allow_anonymous = false;           // CONNECT without a username (general topics only)
  std::string mqtt_acl_file;                   // mosquitto acl_file format; empty = built-in rules
  int64_t mqtt_max_keepalive = 0;              // seconds; 0 = the client's keepalive as asked
  int64_t mqtt_max_packet_bytes = 1 << 20;     // larger MQTT packets close the connection
  int64_t mqtt_max_queued_messages = 1000;     // per session: offline, or past its inflight window
  int64_t mqtt_connect_timeout_ms = 10000;     // a connection must CONNECT within this
  std::string mqtt_port_file;                  // when set, the bound MQTT TCP port is written here

  std::string store;                  // empty: SQLite in data_dir; postgresql://... later
  std::string bus;                    // empty: in-process; amqp://... later
  std::string registration = "open";  // open | admin-only
  std::string admin_user;             // bootstrapped at start when set with admin_password
  std::string admin_password;
  std::string password_cost = "interactive";  // interactive | min (tests and benchmarks only)
  std::string log_level = "info";
  std::string sqlite_synchronous = "normal";  // normal (WAL: safe against crashes) | full
  std::string port_file;                      // when set, the bound HTTP port is written here
  std::string web_root;                       // static web client served at /; empty = none
  std::string ws_echo_path;  // conformance suites only: an unauthenticated echo WebSocket
  int threads = 0;           // network threads; 0 = one per core
  int64_t token_ttl_s = 30LL * 24 * 3600;
  int64_t heartbeat_interval_ms = 30000;   // advised to clients
  int64_t heartbeat_timeout_ms = 90000;    // a connection silent this long is closed
  int64_t max_frame_bytes = 1 << 20;       // WebSocket message; larger closes the connection (1009)
  int64_t max_body_bytes = 64 << 10;       // message body; larger is refused, connection kept
  int64_t max_http_body_bytes = 1 << 20;   // JSON request bodies
  int64_t max_file_bytes = 25 << 20;       // one upload
  int64_t max_send_queue_bytes = 8 << 20;  // per connection; over it a chat client is cut off
  int64_t sync_page_max = 1000;            // most messages one offline/sync/history page returns
  int64_t store_batch_max = 1024;          // most jobs in one group commit
  int64_t shutdown_grace_ms = 5000;        // time to flush connections on stop
  // Abuse limits: "N/S" = N per S seconds (a burst of N, then N every S seconds); "0" = off.
  std::string rate_login_user = "10/300";         // failed logins per user id
  std::string rate_login_address = "50/300";      // failed logins per source address
  std::string rate_register_address = "60/600";   // registrations per source address
  std::string rate_conversations_user = "30/60";  // conversations created per user
  std::string rate_members_user = "300/60";       // members added per user
  int64_t max_groups_per_user = 1000;             // groups one user may be a member of
  int64_t max_group_members = 1000;               // members one group may have
  int64_t request_ttl_s = 604800;                 // applications, invitations, friend requests
  std::string rate_requests_user = "30/60";       // requests a user makes
  int64_t voice_max_frames_per_s = 100;           // audio frames a room member sends
  int64_t voice_max_delay_ms = 200;  // an audio frame queued longer for a listener is dropped
  int64_t voice_max_members = 1000;  // the largest max_members a room may have
  int64_t auth_threads = 2;          // password-hashing threads
  int64_t auth_queue_max = 64;       // logins waiting for a hashing thread; more are refused (429)

  // Offline push (service/push.hpp; docs/protocol.md, "Offline push").
  std::string push_webhook_url;     // http://host[:port]/path; empty = no push
  std::string push_webhook_secret;  // HMAC-SHA256 key of X-Converge-Signature (required with a URL)
  int64_t push_retry_max = 6;       // tries per push, the first included; then a dead letter
  int64_t push_retry_base_ms = 1000;  // wait after the first failed try, doubled after each next
  int64_t push_retry_cap_ms = 60000;  // longest wait between two tries
  int64_t push_timeout_ms = 5000;     // one POST, from connect to the answer's last byte
  int64_t push_batch_max = 100;       // pushes per POST
  int64_t push_batch_ms = 50;         // how long a message waits for others to share a POST
  int64_t push_queue_max = 10000;     // messages waiting for the push worker in memory
  int64_t push_preview_chars = 100;   // characters of the body in a push's preview
};

struct ConfigKey {
  std::string key;  // file key; env CONVERGE_<KEY upper>; flag --<key with dashes>
  std::string help;
  std::function<Status(Config&, std::string_view)> set;
  std::function<std::string(const Config&)> get;
};
const std::vector<ConfigKey>& config_keys();

Status config_set(Config& cfg, std::string_view key, std::string_view value);
// `key = value` lines; `#` starts a comment; blank lines ignored.
Status config_load_file(Config& cfg, const std::string& path);
// Reads CONVERGE_<KEY> for every key from `getenv`.
Status config_load_env(Config& cfg, const std::function<const char*(const char*)>& getenv_fn);
Status config_validate(const Config& cfg);

// Splits "host:port"; port may be 0.
Status split_host_port(std::string_view s, std::string& host, uint16_t& port);

// mqtt_listen turns the TCP listener off ("" or "off"); /mqtt on the HTTP port stays.
bool mqtt_tcp_enabled(const Config& cfg);

}  // namespace converge
