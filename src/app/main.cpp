// converge: one binary runs a node (DESIGN.md section 3). This is the composition root: the only
// place that names concrete engines (SQLite, in-process bus) and wires the layers together.
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/post.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "app/migrate.hpp"
#include "base/config.hpp"
#include "base/crypto.hpp"
#include "base/metrics.hpp"
#include "base/process.hpp"
#include "base/rate_limit.hpp"
#include "bus/local/local_bus.hpp"
#include "bus/rabbitmq/rabbitmq_bus.hpp"
#include "client/webhook.hpp"
#include "gateway/amqp/center.hpp"
#include "gateway/http/server.hpp"
#include "gateway/mqtt/broker.hpp"
#include "gateway/mqtt/im_namespace.hpp"
#include "gateway/mqtt/tcp_listener.hpp"
#include "net/io_pool.hpp"
#include "proto/codec.hpp"
#include "service/cluster.hpp"
#include "service/hub.hpp"
#include "service/rooms.hpp"
#include "service/service.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/sqlite/sqlite_store.hpp"

#ifndef CONVERGE_VERSION
#define CONVERGE_VERSION "dev"
#endif

namespace fs = std::filesystem;
using namespace converge;

namespace {

struct Cli {
  std::string config_file;
  std::vector<std::pair<std::string, std::string>> flags;  // key, value, in command-line order
};

// Flags > environment > config file > defaults.
Result<Config> resolve_config(const Cli& cli) {
  Config cfg;
  std::string file = cli.config_file;
  if (file.empty())
    if (const char* f = std::getenv("CONVERGE_CONFIG")) file = f;
  if (!file.empty())
    if (auto s = config_load_file(cfg, file); !s) return s.error();
  if (auto s = config_load_env(cfg, [](const char* n) { return std::getenv(n); }); !s)
    return s.error();
  for (auto& [k, v] : cli.flags)
    if (auto s = config_set(cfg, k, v); !s) return s.error();
  if (auto s = config_validate(cfg); !s) return s.error();
  return cfg;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string dashed(std::string s) {
  for (auto& c : s)
    if (c == '_') c = '-';
  return s;
}

// Adds --<key> for every configuration key to `cmd`, collecting into `cli`.
void add_config_flags(CLI::App* cmd, Cli& cli) {
  cmd->add_option("--config", cli.config_file, "configuration file (key = value lines)");
  for (auto& k : config_keys()) {
    std::string flag = "--" + dashed(k.key);
    std::string key = k.key;
    cmd->add_option_function<std::string>(
        flag, [&cli, key](const std::string& v) { cli.flags.emplace_back(key, v); }, k.help);
  }
}

void set_log_level(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

Result<std::unique_ptr<Store>> open_store(const Config& cfg) {
  if (cfg.store.starts_with("postgresql://") || cfg.store.starts_with("postgres://")) {
    PostgresOptions o;
    o.url = cfg.store;
    return open_postgres_store(o);
  }
  if (!cfg.store.empty())
    return make_error(Errc::bad_request,
                      "store " + cfg.store + ": expected postgresql://... (or empty for SQLite)");
  std::error_code ec;
  fs::create_directories(cfg.data_dir, ec);
  if (ec)
    return make_error(Errc::internal,
                      "cannot create data dir " + cfg.data_dir + ": " + ec.message());
  SqliteOptions o;
  o.path = (fs::path(cfg.data_dir) / "converge.db").string();
  o.synchronous_full = cfg.sqlite_synchronous == "full";
  return open_sqlite_store(o);
}

// The in-process bus alone; RabbitMQ (seed 000's topology) with --bus amqp://...
Result<std::unique_ptr<Bus>> open_bus(const Config& cfg, const std::string& node_id,
                                      Metrics& metrics) {
  if (cfg.bus.empty()) return make_local_bus();
  if (!cfg.bus.starts_with("amqp://"))
    return make_error(Errc::bad_request,
                      "bus " + cfg.bus + ": expected amqp://... (or empty for the in-process bus)");
  RabbitMqOptions o;
  o.url = cfg.bus;
  o.node_id = node_id;
  o.metrics = &metrics;
  o.message_frame = [](const Delivery& d) {
    return d.wire.get(WireCache::ws_frame, [&] { return proto::frame_msg(d.msg); });
  };
  o.encode_notice = [](const Notice& n) { return proto::notice_envelope(n); };
  o.decode_notice = [](std::string_view text) -> std::shared_ptr<const Notice> {
    auto n = proto::parse_notice_envelope(text);
    if (!n) return nullptr;
    return std::move(n.value());
  };
  return make_rabbitmq_bus(std::move(o));
}

ServiceOptions service_options(const Config& cfg) {
  ServiceOptions o;
  o.files_dir = cfg.files_dir.empty() ? (fs::path(cfg.data_dir) / "files").string() : cfg.files_dir;
  o.open_registration = cfg.registration == "open";
  o.password_cost = cfg.password_cost == "min" ? password_cost_min() : password_cost_interactive();
  o.token_ttl_ms = cfg.token_ttl_s * 1000;
  o.sync_page_max = cfg.sync_page_max;
  o.sync_page_default = std::min<int64_t>(100, cfg.sync_page_max);
  // A page must fit in a client's send queue with room to spare.
  o.sync_page_bytes = std::min<int64_t>(1 << 20, cfg.max_send_queue_bytes / 4);
  o.max_file_bytes = cfg.max_file_bytes;
  o.store_batch_max = cfg.store_batch_max;
  o.work_threads = std::max(2u, std::thread::hardware_concurrency());
  o.auth_threads = static_cast<unsigned>(cfg.auth_threads);
  o.auth_queue_max = static_cast<std::size_t>(cfg.auth_queue_max);
  // Validated when the configuration was read.
  o.rate_login_user = parse_rate(cfg.rate_login_user).value();
  o.rate_login_address = parse_rate(cfg.rate_login_address).value();
  o.rate_register_address = parse_rate(cfg.rate_register_address).value();
  o.rate_conversations_user = parse_rate(cfg.rate_conversations_user).value();
  o.rate_members_user = parse_rate(cfg.rate_members_user).value();
  o.max_groups_per_user = cfg.max_groups_per_user;
  o.max_group_members = cfg.max_group_members;
  o.request_ttl_ms = cfg.request_ttl_s * 1000;
  o.rate_requests_user = parse_rate(cfg.rate_requests_user).value();
  o.push.secret = cfg.push_webhook_secret;
  o.push.retry_max = cfg.push_retry_max;
  o.push.retry_base_ms = cfg.push_retry_base_ms;
  o.push.retry_cap_ms = cfg.push_retry_cap_ms;
  o.push.batch_max = static_cast<std::size_t>(cfg.push_batch_max);
  o.push.batch_ms = cfg.push_batch_ms;
  o.push.queue_max = static_cast<std::size_t>(cfg.push_queue_max);
  o.push.preview_chars = static_cast<std::size_t>(cfg.push_preview_chars);
  o.push.single_node = cfg.bus.empty();  // the in-process bus: no other node shares the store
  o.push.node_timeout_ms = cfg.node_timeout_ms;
  return o;
}

// The push webhook's client, when push_webhook_url is set (a bad URL is a configuration error).
Result<PushPost> push_post(const Config& cfg) {
  if (cfg.push_webhook_url.empty()) return PushPost{};
  auto url = client::parse_webhook_url(cfg.push_webhook_url);
  if (!url) return url.error();
  auto c = std::make_shared<client::WebhookClient>(std::move(url.value()), cfg.push_timeout_ms,
                                                   std::string("converge/") + CONVERGE_VERSION);
  return PushPost([c](const std::string& body, const std::string& signature) {
    auto a = c->post(body, signature);
    return PushResponse{a.status, std::move(a.error)};
  });
}

int serve(const Cli& cli) {
  auto cfg_r = resolve_config(cli);
  if (!cfg_r) {
    std::fprintf(stderr, "converge: %s\n", cfg_r.error().message.c_str());
    return 2;
  }
  const Config& cfg = cfg_r.value();
  set_log_level(cfg.log_level);
  // A broken ACL is a configuration error: the node does not start on guesses about it.
  auto acl = cfg.mqtt_acl_file.empty() ? Result<mqtt::Acl>(mqtt::Acl::default_rules())
                                       : mqtt::Acl::load_file(cfg.mqtt_acl_file);
  if (!acl) {
    std::fprintf(stderr, "converge: mqtt_acl_file %s\n", acl.error().message.c_str());
    return 2;
  }
  auto post = push_post(cfg);
  if (!post) {
    std::fprintf(stderr, "converge: %s\n", post.error().message.c_str());
    return 2;
  }
  if (!cfg.web_root.empty()) {
    // The static route never serves the data dir (the database, its WAL, uploads); a web root
    // inside it would be nothing but that.
    std::error_code ec;
    fs::create_directories(cfg.data_dir, ec);
    auto data = fs::weakly_canonical(cfg.data_dir, ec);
    auto root = fs::weakly_canonical(cfg.web_root, ec);
    auto [d, r] = std::mismatch(data.begin(), data.end(), root.begin(), root.end());
    if (!ec && d == data.end()) {
      std::fprintf(stderr, "converge: web_root %s is inside data_dir %s: refusing to serve it\n",
                   cfg.web_root.c_str(), cfg.data_dir.c_str());
      return 2;
    }
  }

  // Block the stop signals in every thread; the main thread waits for them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  const uint64_t fd_limit = raise_fd_limit();

  auto store = open_store(cfg);
  if (!store) {
    spdlog::error("store: {}", store.error().message);
    return 1;
  }
  Metrics metrics;
  const std::string node_id = cfg.node_id.empty() ? "n-" + random_hex(4) : cfg.node_id;
  auto bus_r = open_bus(cfg, node_id, metrics);
  if (!bus_r) {
    spdlog::error("bus: {}", bus_r.error().message);
    return 1;
  }
  auto& bus = bus_r.value();
  Hub hub;
  unsigned threads = cfg.threads > 0 ? static_cast<unsigned>(cfg.threads)
                                     : std::max(1u, std::thread::hardware_concurrency());
  IoPool io(threads);
  for (std::size_t i = 0; i < io.size(); ++i) {
    auto* ctx = &io.loop(i);
    hub.add_shard([ctx](std::function<void()> fn) { boost::asio::post(*ctx, std::move(fn)); });
  }
  ServiceOptions so = service_options(cfg);
  so.push.post = std::move(post.value());
  Service svc(std::move(so), *store.value(), *bus, hub, metrics);
  // The bus hands everything to the cluster side, which keeps the node's interest and passes
  // deliveries on to the hub.
  Cluster cluster(svc, *bus, hub, metrics,
                  ClusterOptions{node_id, cfg.node_heartbeat_ms, cfg.node_timeout_ms});
  bus->set_listener(&cluster);
  svc.set_cluster(&cluster);
  CenterGateway center(svc, *bus, static_cast<std::size_t>(cfg.max_body_bytes));
  cluster.set_center_handler([&center](CenterRequest r) { center.handle(std::move(r)); });
  if (auto s = svc.start(); !s) {
    spdlog::error("service: {}", s.error().message);
    return 1;
  }
  // Voice rooms (DESIGN.md section 7): frames and events of a room cross the cluster on its
  // transient key; a node taken for dead has its members leave.
  RoomsOptions ro;
  ro.max_frames_per_s = cfg.voice_max_frames_per_s;
  ro.max_members_cap = cfg.voice_max_members;
  Rooms rooms(ro, svc, *bus, hub, metrics);
  cluster.add_transient_handler("room.", [&rooms](const std::string& key, const std::string&,
                                                  std::shared_ptr<const std::string> payload) {
    rooms.on_transient(key, std::move(payload));
  });
  svc.on_node_lost([&rooms](const std::string& node) { rooms.forget_node(node); });
  if (auto s = rooms.start(cfg.bus.empty()); !s) {
    spdlog::error("voice rooms: {}", s.error().message);
    return 1;
  }
  if (!cfg.admin_user.empty()) {
    if (auto s = svc.ensure_admin(cfg.admin_user, cfg.admin_password); !s) {
      spdlog::error("admin bootstrap: {}", s.error().message);
      return 1;
    }
    spdlog::info("admin user {} is ready", cfg.admin_user);
  }
  if (!cfg.push_webhook_url.empty())  // the host alone: a URL may carry a token in its query
    spdlog::info("offline push: webhook on {} ({} tries, {} ms timeout)",
                 client::parse_webhook_url(cfg.push_webhook_url).value().host_header,
                 cfg.push_retry_max, cfg.push_timeout_ms);
  cluster.start();
  if (!cfg.bus.empty())
    if (auto s = svc.announce_start(node_id); !s)
      spdlog::warn("center_start not confirmed by the broker: {}", s.error().message);

  HttpServerOptions ho;
  ho.api.heartbeat_interval_ms = cfg.heartbeat_interval_ms;
  ho.api.heartbeat_timeout_ms = cfg.heartbeat_timeout_ms;
  ho.api.max_body_bytes = static_cast<std::size_t>(cfg.max_body_bytes);
  ho.api.rooms = &rooms;
  ho.max_http_body_bytes = static_cast<std::size_t>(cfg.max_http_body_bytes);
  ho.max_file_bytes = static_cast<std::size_t>(cfg.max_file_bytes);
  ho.max_frame_bytes = static_cast<std::size_t>(cfg.max_frame_bytes);
  ho.max_send_queue_bytes = static_cast<std::size_t>(cfg.max_send_queue_bytes);
  ho.heartbeat_timeout_ms = cfg.heartbeat_timeout_ms;
  ho.voice_max_delay_ms = cfg.voice_max_delay_ms;
  ho.web_root = cfg.web_root;
  ho.data_dir = cfg.data_dir;
  ho.ws_echo_path = cfg.ws_echo_path;
  if (!cfg.ws_echo_path.empty())
    spdlog::warn("ws_echo_path {} echoes without authentication: conformance tests only",
                 cfg.ws_echo_path);

  // MQTT (DESIGN.md section 3): one broker, over TCP on mqtt_listen and WebSocket at /mqtt.
  mqtt::BrokerOptions mo;
  mo.node_id = node_id;
  mo.allow_anonymous = cfg.mqtt_allow_anonymous;
  mo.max_keepalive_s = static_cast<uint16_t>(cfg.mqtt_max_keepalive);
  mo.max_packet_bytes = static_cast<std::size_t>(cfg.mqtt_max_packet_bytes);
  mo.max_queued_messages = static_cast<std::size_t>(cfg.mqtt_max_queued_messages);
  mo.session_store = store.value().get();  // sessions with an expiry outlive the node
  mo.sole_node = cfg.bus.empty();
  // The broker's slow-consumer threshold (QoS 0 dropped, QoS 1/2 held back) sits below the
  // transports' hard cap (max_send_queue_bytes, cut), with room for one packet more.
  // An MQTT connection's queue holds two of the largest packets at least, whatever
  // max_send_queue_bytes says.
  const auto mqtt_queue_bytes =
      static_cast<std::size_t>(std::max(cfg.max_send_queue_bytes, 2 * cfg.mqtt_max_packet_bytes));
  mo.max_queued_bytes = mqtt_queue_bytes / 2;
  // The IM namespaces (user/..., group/...): seed 002's chat over the same service.
  mqtt::ImNamespace im(svc, hub, metrics, static_cast<std::size_t>(cfg.max_body_bytes));
  mqtt::Broker broker(mo, svc, metrics, std::move(acl.value()), &im);
  // A cluster's general topics: what the other nodes' brokers publish (gateway/mqtt/bus_route.hpp).
  cluster.add_transient_handler("mqtt", [&broker](const std::string& key, const std::string&,
                                                  std::shared_ptr<const std::string> payload) {
    broker.from_bus(key, *payload);
  });
  mqtt::AcceptFn mqtt_accept = [&broker](std::shared_ptr<mqtt::Link> link) {
    return broker.accept(std::move(link));
  };
  ho.mqtt_accept = mqtt_accept;
  ho.mqtt_max_message_bytes = 2 * static_cast<std::size_t>(cfg.mqtt_max_packet_bytes);
  ho.mqtt_max_send_queue_bytes = mqtt_queue_bytes;
  ho.mqtt_connect_timeout_ms = cfg.mqtt_connect_timeout_ms;
  mqtt::TcpListenerOptions to;
  to.connect_timeout = std::chrono::milliseconds(cfg.mqtt_connect_timeout_ms);
  to.max_queued_bytes = mqtt_queue_bytes;
  mqtt::TcpListener mqtt_tcp(to, mqtt_accept, io, metrics);

  HttpServer http(ho, svc, hub, io, metrics);
  std::string host;
  uint16_t port = 0;
  (void)split_host_port(cfg.listen, host, port);
  if (auto s = http.listen(host, port); !s) {
    spdlog::error("{}", s.error().message);
    return 1;
  }
  std::string mqtt_host;
  uint16_t mqtt_port = 0;
  const bool mqtt_tcp_on = mqtt_tcp_enabled(cfg);
  if (mqtt_tcp_on) {
    (void)split_host_port(cfg.mqtt_listen, mqtt_host, mqtt_port);
    if (auto s = mqtt_tcp.listen(mqtt_host, mqtt_port); !s) {
      spdlog::error("{}", s.error().message);
      return 1;
    }
  }
  // The bound ports are read before the loops run (an acceptor is not to be used from two
  // threads at once).
  const uint16_t bound = http.port();
  const uint16_t mqtt_bound = mqtt_tcp_on ? mqtt_tcp.port() : 0;
  broker.start();
  io.start();
  // The MQTT port first: a script that waits for port_file then finds both.
  if (!cfg.mqtt_port_file.empty() && mqtt_tcp_on) {
    std::ofstream(cfg.mqtt_port_file + ".tmp") << mqtt_bound << "\n";
    fs::rename(cfg.mqtt_port_file + ".tmp", cfg.mqtt_port_file);
  }
  if (!cfg.port_file.empty()) {
    std::ofstream(cfg.port_file + ".tmp") << bound << "\n";
    fs::rename(cfg.port_file + ".tmp", cfg.port_file);
  }
  std::string url = "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
                    ":" + std::to_string(bound);
  cluster.set_address(cfg.node_address.empty() ? url : cfg.node_address);
  spdlog::info(
      "Converge {} node {} listening on {} ({} network threads, store {}, bus {}, data {}, "
      "{} file descriptors)",
      CONVERGE_VERSION, node_id, url, io.size(), store.value()->engine_name(), bus->engine_name(),
      fs::absolute(cfg.data_dir).string(), fd_limit);
  std::string mqtt_line = "  MQTT:        ";
  if (mqtt_tcp_on)
    mqtt_line += "mqtt://" +
                 (mqtt_host.find(':') != std::string::npos ? "[" + mqtt_host + "]" : mqtt_host) +
                 ":" + std::to_string(mqtt_bound) + "   ";
  mqtt_line += "over WebSocket: " + ("ws" + url.substr(4)) + "/mqtt (subprotocol mqtt)\n";
  std::printf(
      "\nConverge is running.\n"
      "  web client:  %s/%s\n"
      "  API:         %s/api/v1   WebSocket: %s/ws\n"
      "%s"
      "  sign up:     %s\n"
      "  health:      %s/healthz   metrics: %s/metrics\n"
      "Stop with Ctrl-C.\n\n",
      url.c_str(), cfg.web_root.empty() ? "  (no web client configured: web_root)" : "",
      url.c_str(), ("ws" + url.substr(4)).c_str(), mqtt_line.c_str(),
      cfg.registration == "open"
          ? ("open the web client, or: curl -X POST " + url +
             "/api/v1/users -d '{\"user_id\":\"alice\",\"password\":\"...\"}'")
                .c_str()
          : "registration is admin-only: converge user add USER PASSWORD --data-dir DIR",
      url.c_str(), url.c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("signal {}: stopping (grace {} ms)", sig, cfg.shutdown_grace_ms);
  // MQTT first: no new connections, then the broker closes its clients (no wills of a stopping
  // node), then the transports flush and close what is left.
  mqtt_tcp.stop_accepting();
  broker.stop();
  mqtt_tcp.shutdown(cfg.shutdown_grace_ms);
  http.shutdown(cfg.shutdown_grace_ms);
  rooms.stop();
  svc.stop();   // commits what is queued (and hands it to the bus); center requests that
                // arrive now are not acked, so the broker gives them to another node
  bus->stop();  // publishes what is queued; no listener call after this
  cluster.stop();
  io.stop();
  io.join();
  spdlog::info("stopped");
  return 0;
}

int user_add(const Cli& cli, const std::string& user_id, const std::string& password,
             const std::string& name, bool admin) {
  auto cfg_r = resolve_config(cli);
  if (!cfg_r) {
    std::fprintf(stderr, "converge: %s\n", cfg_r.error().message.c_str());
    return 2;
  }
  auto& cfg = cfg_r.value();
  set_log_level("warn");
  auto store = open_store(cfg);
  if (!store) {
    std::fprintf(stderr, "converge: %s\n", store.error().message.c_str());
    return 1;
  }
  auto bus = make_local_bus();
  Metrics metrics;
  Hub hub;
  Service svc(service_options(cfg), *store.value(), *bus, hub, metrics);
  if (auto s = svc.start(); !s) {
    std::fprintf(stderr, "converge: %s\n", s.error().message.c_str());
    return 1;
  }
  if (admin) {
    if (auto s = svc.ensure_admin(user_id, password); !s) {
      std::fprintf(stderr, "converge: %s\n", s.error().message.c_str());
      return 1;
    }
  } else if (auto u = svc.register_user(user_id, name, password, true, false); !u) {
    std::fprintf(stderr, "converge: %s\n", u.error().message.c_str());
    return 1;
  }
  std::printf("user %s %s\n", user_id.c_str(), admin ? "is an admin" : "added");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (!crypto_init()) {
    std::fprintf(stderr, "converge: libsodium failed to initialise\n");
    return 1;
  }
  CLI::App app{"Converge: an instant-messaging server"};
  app.require_subcommand(1);
  Cli cli;

  auto* serve_cmd = app.add_subcommand("serve", "run a node");
  add_config_flags(serve_cmd, cli);

  auto* user_cmd = app.add_subcommand("user", "manage users in the node's store");
  user_cmd->require_subcommand(1);
  auto* add_cmd =
      user_cmd->add_subcommand("add", "add a user (or, with --admin, make one an admin)");
  std::string uid, pw, name;
  bool admin = false;
  add_cmd->add_option("user_id", uid, "user id")->required();
  add_cmd->add_option("password", pw, "password")->required();
  add_cmd->add_option("--name", name, "display name");
  add_cmd->add_flag("--admin", admin, "create or reset as an admin");
  add_config_flags(add_cmd, cli);

  app.add_subcommand("config", "print every configuration key with its default, as a config file")
      ->callback([] {
        Config defaults;
        for (auto& k : config_keys())
          std::printf("# %s (env CONVERGE_%s, flag --%s)\n%s = %s\n", k.help.c_str(),
                      upper(k.key).c_str(), dashed(k.key).c_str(), k.key.c_str(),
                      k.get(defaults).c_str());
      });

  // Options are checked by run_migrate (not CLI11's required()): a usage error exits with 2.
  auto* migrate_cmd = app.add_subcommand(
      "migrate",
      "copy a stopped node's data (SQLite, file blobs) into a cluster's PostgreSQL database and "
      "shared files dir (docs/operations.md)");
  MigrateArgs migrate_args;
  migrate_cmd->add_option("--from", migrate_args.from, "the node's data dir (holds converge.db)");
  migrate_cmd->add_option("--to", migrate_args.to,
                          "postgresql://... of an empty database (its schema is created)");
  migrate_cmd->add_option("--files-to", migrate_args.files_to,
                          "copy the file blobs into this shared dir, checking each sha256 "
                          "(default: leave them in the node's files dir)");
  migrate_cmd->add_option("--files-from", migrate_args.files_from,
                          "the node's files_dir, if it was not DATA_DIR/files");
  for (auto* o : migrate_cmd->get_options())
    if (o->get_name() != "--help") o->expected(0, 1);  // "--from" alone: run_migrate's usage
  migrate_cmd->allow_extras();

  app.add_subcommand("version", "print the version")->callback([] {
    std::printf("converge %s\n", CONVERGE_VERSION);
  });

  CLI11_PARSE(app, argc, argv);
  if (serve_cmd->parsed()) return serve(cli);
  if (add_cmd->parsed()) return user_add(cli, uid, pw, name, admin);
  if (migrate_cmd->parsed()) {
    migrate_args.unexpected = migrate_cmd->remaining();
    return run_migrate(migrate_args);
  }
  return 0;
}
