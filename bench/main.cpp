// converge-bench: a load generator for Converge and the servers it is compared with.
// Scenarios: fanout (group fan-out), chat (1:1, stored, acks awaited), idle (held connections),
// catchup (an offline device syncing N missed messages), voice (voice rooms: audio frames
// relayed to the other members, voice.hpp). Targets: converge, tcp, ws, socketio, mqtt (any
// MQTT broker, general topics) and mqtt-im (Converge's IM namespace over MQTT); `--target voice`
// is `--target converge --scenario voice`. Run with --help for the flags.
#include <CLI/CLI.hpp>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <future>
#include <thread>

#include "base/crypto.hpp"
#include "base/process.hpp"
#include "histogram.hpp"
#include "proc_stats.hpp"
#include "targets.hpp"
#include "voice.hpp"

using namespace converge;
using namespace converge::bench;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

uint64_t now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

struct Options {
  std::string target = "converge";
  std::string host = "127.0.0.1";
  std::vector<uint16_t> ports;  // --port (repeatable) and --ports a,b,c: a cluster's nodes
  std::string scenario = "fanout";
  int groups = 10;
  int members = 20;
  int publishers = 10;  // fanout: publishers in all; chat: ignored (everyone sends)
  double rate = 0;      // messages/s offered in all; 0 = flat out with a window
  int window = 8;       // messages in flight per publisher when flat out
  // fanout, flat out: a message leaves the window when every member has it (--window-all),
  // else when the sender's own copy comes back (a single node delivers to all members at once;
  // through a cluster the sender's node is the fast path and the others would fall behind).
  bool window_all = false;
  int size = 64;  // body bytes
  // Peers: bodies padded so that every delivery takes this many bytes on the wire (the size of
  // Converge's pushes of --size bodies, measured), overriding --size; 0 = --size.
  int frame_bytes = 0;
  // Converge: how each send's client_msg_id is made, "time" (as the SDK's) or "random".
  std::string client_ids = "time";
  double duration = 5;      // seconds measured
  double warmup = 1;        // seconds before measuring
  double drain = 2;         // seconds after measuring for what is in flight to arrive
  int pairs = 50;           // chat: conversations of two
  int conns = 1000;         // idle
  int users = 1000;         // idle: users the connections share
  int catchup = 10000;      // catchup: messages missed
  int catchup_senders = 1;  // catchup: direct conversations (a sender each) the messages are in
  int catchup_window = 64;  // catchup: messages awaiting their ack per sender while setting up
  int sync_limit = 1000;    // catchup: messages per sync page asked for
  int sources = 8;          // source addresses 127.0.0.1..N
  int threads = 2;
  int rooms = 10;          // voice: rooms (of --members each, 50 unless given)
  int speakers = 3;        // voice: speakers per room
  double fps = 50;         // voice: frames a second per speaker
  int qos = 0;             // mqtt, mqtt-im: of every PUBLISH and SUBSCRIBE
  uint16_t mqtt_port = 0;  // mqtt-im: the node's MQTT port (--port is its HTTP port)
  int mqtt_version = 4;    // 4 = MQTT 3.1.1, 5 = MQTT 5
  int server_pid = 0;
  std::vector<std::string> watch;  // NAME=PID: CPU of the process and its descendants
  bool hold = false;               // idle: keep the connections until stdin closes
  std::string json_path;
  std::string label;
};

struct alignas(64) Counters {
  std::atomic<uint64_t> sent{0}, delivered{0}, acks{0}, errors{0}, ready{0}, closed{0};
  std::atomic<uint64_t> sent_measured{0}, delivered_measured{0};
  std::atomic<uint64_t> wire_bytes_measured{0};  // what the measured deliveries took on the wire
};

struct Worker;

struct ConnState {
  int index = 0;
  int group = -1;
  int group_size = 0;
  bool publisher = false;
  bool ready = false;
  uint64_t next_id = 1;
  uint64_t inflight = 0;
  uint64_t unacked = 0;            // fanout, MQTT QoS 1: publishes not yet acked (PUBACK)
  std::deque<uint64_t> ack_times;  // send times of unacked messages, in order (chat)
  // --window-all: deliveries still due for message id, at [id % size] (ids in flight are fewer
  // than the window, so their slots differ); counted down by whichever worker gets one.
  std::unique_ptr<std::atomic<int>[]> due;
  std::size_t due_size = 0;
  std::shared_ptr<Conn> conn;
  Worker* w = nullptr;
};

struct Shared {
  Options opt;
  Target* target = nullptr;
  std::atomic<bool> publishing{false};
  std::atomic<bool> measuring{false};
  std::atomic<uint64_t> measure_start_ns{UINT64_MAX}, measure_end_ns{UINT64_MAX},
      publish_start_ns{0};
  std::string padding;
  std::vector<std::size_t> body_size;  // by group: --frame-bytes's body length, else --size
  bool chat = false;
  // catchup: messages still to send in all (the senders share it); -1 = no limit.
  std::atomic<int64_t> budget{-1};
  // catchup: the device's paging through sync, done on its worker (each reply asks for the next).
  std::atomic<bool> sync_done{false};
  uint64_t sync_messages = 0, sync_pages = 0, sync_bytes = 0, sync_end_ns = 0;
  std::string sync_error;
  std::vector<ConnState*> states;  // by connection index
};

struct Worker {
  Shared* sh;
  std::size_t id;
  asio::io_context io{1};
  Counters c;
  Histogram latency_us;  // delivery latency (fanout) or ack latency (chat): this thread only
  // Fan-out through several nodes: deliveries whose sender is on the receiver's node, and not.
  Histogram latency_same_us, latency_cross_us;
  std::vector<ConnState*> conns;
  std::vector<ConnState*> publishers;
  std::unique_ptr<asio::steady_timer> tick;

  void publish_one(ConnState& s) {
    uint64_t t = now_ns();
    std::string body =
        std::to_string(s.index) + ":" + std::to_string(s.next_id) + ":" + std::to_string(t) + ":";
    std::size_t size = s.group >= 0 && static_cast<std::size_t>(s.group) < sh->body_size.size()
                           ? sh->body_size[static_cast<std::size_t>(s.group)]
                           : static_cast<std::size_t>(std::max(sh->opt.size, 0));
    if (body.size() < size) body.append(sh->padding, 0, size - body.size());
    // Deliveries due before the send: a send may write at once, and another worker may get a
    // copy before this one returns.
    if (s.due) s.due[s.next_id % s.due_size].store(s.group_size, std::memory_order_release);
    s.conn->send(sh->target->publish(s.index, s.group, body, s.next_id));
    ++s.next_id;
    ++s.inflight;
    if (!sh->chat && sh->target->acks_publishes()) ++s.unacked;
    if (sh->chat) s.ack_times.push_back(t);
    c.sent.fetch_add(1, std::memory_order_relaxed);
    // Sends and deliveries are both counted by the send timestamp, so a message at the edge of
    // the window is in both counts or in neither.
    if (t >= sh->measure_start_ns.load(std::memory_order_relaxed) &&
        t < sh->measure_end_ns.load(std::memory_order_relaxed))
      c.sent_measured.fetch_add(1, std::memory_order_relaxed);
  }

  void fill_window(ConnState& s) {
    // MQTT QoS 1: a message is in the window until both its PUBACK and its own copy are back.
    while (sh->publishing.load(std::memory_order_relaxed) &&
           s.inflight < static_cast<uint64_t>(sh->opt.window) &&
           s.unacked < static_cast<uint64_t>(sh->opt.window) && take_budget())
      publish_one(s);
  }
  bool take_budget() {
    if (sh->budget.load(std::memory_order_relaxed) < 0) return true;
    for (int64_t b = sh->budget.load(); b > 0;)
      if (sh->budget.compare_exchange_weak(b, b - 1)) return true;
    return false;
  }

  // catchup: a sync page came (on this worker, the device's): count it and ask for the next at
  // once, as a client would; the page is scanned, not parsed (the generator's JSON parse of a
  // 1000-message page would be measured as the server's time).
  void on_sync_page(ConnState& s, std::string_view f) {
    if (sh->sync_done.load()) return;
    if (f.find(R"("cmd":"error")") != std::string_view::npos ||
        f.find(R"("messages":[)") == std::string_view::npos) {
      sh->sync_error = std::string(f.substr(0, 300));
      sh->sync_end_ns = now_ns();
      sh->sync_done = true;
      return;
    }
    ++sh->sync_pages;
    sh->sync_bytes += f.size();
    // Every stored message has one "seq" (the bodies are digits, ':' and 'x').
    for (std::size_t at = 0; (at = f.find(R"("seq":)", at)) != std::string_view::npos; at += 6)
      ++sh->sync_messages;
    auto tail = f.substr(f.rfind(R"("more":)"));
    if (tail.starts_with(R"("more":true)")) {
      auto c = after(tail, R"("next_cursor":")");
      std::string cursor(c.substr(0, c.find('"')));
      s.conn->send(sh->target->sync_request(++s.next_id, cursor, sh->opt.sync_limit));
    } else {
      sh->sync_end_ns = now_ns();
      sh->sync_done = true;
    }
  }
  static std::string_view after(std::string_view s, std::string_view key) {
    auto at = s.find(key);
    return at == std::string_view::npos ? std::string_view{} : s.substr(at + key.size());
  }

  void on_message(ConnState& s, std::string_view frame) {
    auto p = sh->target->parse(frame);
    switch (p.kind) {
      case Kind::ready:
        if (!s.ready) {
          s.ready = true;
          c.ready.fetch_add(1, std::memory_order_relaxed);
        }
        break;
      case Kind::ping:
        s.conn->send(sh->target->pong(frame));
        break;
      case Kind::error:
        c.errors.fetch_add(1, std::memory_order_relaxed);
        break;
      case Kind::ack: {
        if (!sh->chat) {  // fanout, MQTT QoS 1: a PUBACK
          if (s.unacked) --s.unacked;
          if (sh->opt.rate == 0) fill_window(s);
          break;
        }
        uint64_t t = now_ns();
        c.acks.fetch_add(1, std::memory_order_relaxed);
        if (!s.ack_times.empty()) {
          uint64_t sent = s.ack_times.front();
          s.ack_times.pop_front();
          if (sent >= sh->measure_start_ns.load(std::memory_order_relaxed) &&
              sent < sh->measure_end_ns.load(std::memory_order_relaxed)) {
            latency_us.record((t - sent) / 1000);
            c.delivered_measured.fetch_add(1, std::memory_order_relaxed);
          }
        }
        if (s.inflight) --s.inflight;
        if (sh->opt.rate == 0) fill_window(s);
        break;
      }
      case Kind::delivery: {
        uint64_t t = now_ns();
        c.delivered.fetch_add(1, std::memory_order_relaxed);
        // body = "<publisher conn>:<id>:<send ns>:..."
        auto b = p.body;
        int from = -1;
        uint64_t sent = 0;
        auto c1 = b.find(':');
        auto c2 = b.find(':', c1 + 1);
        auto c3 = b.find(':', c2 + 1);
        if (c1 == std::string_view::npos || c3 == std::string_view::npos) break;
        std::from_chars(b.data(), b.data() + c1, from);
        std::from_chars(b.data() + c2 + 1, b.data() + c3, sent);
        if (!sh->chat && sent >= sh->measure_start_ns.load(std::memory_order_relaxed) &&
            sent < sh->measure_end_ns.load(std::memory_order_relaxed)) {
          latency_us.record((t - sent) / 1000);
          c.wire_bytes_measured.fetch_add(sh->target->delivery_wire_bytes(frame, s.group),
                                          std::memory_order_relaxed);
          if (sh->opt.ports.size() > 1)
            (sh->target->node_of(from) == sh->target->node_of(s.index) ? latency_same_us
                                                                       : latency_cross_us)
                .record((t - sent) / 1000);
          c.delivered_measured.fetch_add(1, std::memory_order_relaxed);
        }
        if (sh->chat || from < 0 || static_cast<std::size_t>(from) >= sh->states.size()) break;
        if (auto* pub = sh->states[static_cast<std::size_t>(from)]; pub->due) {
          // --window-all: the last member to get it frees the publisher's slot.
          uint64_t id = 0;
          std::from_chars(b.data() + c1 + 1, b.data() + c2, id);
          if (pub->due[id % pub->due_size].fetch_sub(1, std::memory_order_acq_rel) == 1)
            asio::post(pub->w->io, [pub] {
              if (pub->inflight) --pub->inflight;
              pub->w->fill_window(*pub);
            });
        } else if (from == s.index) {  // our own message came back: flow control
          if (s.inflight) --s.inflight;
          if (sh->opt.rate == 0) fill_window(s);
        }
        break;
      }
      case Kind::other:
        if (frame.starts_with(R"({"cmd":"sync")")) on_sync_page(s, frame);
        break;
    }
  }

  // Fixed offered rate, open loop (sends never wait for answers): every 250 us this worker sends
  // what is due by now at its share of the rate, one message per publisher in turn. Publishers
  // that each kept their own schedule would all come due at the same instants and send in
  // bursts, and the generator's own queue of answers to a burst would be measured as latency.
  void start_ticker() {
    tick = std::make_unique<asio::steady_timer>(io);
    arm();
  }
  void arm() {
    tick->expires_after(std::chrono::microseconds(250));
    tick->async_wait([this](boost::system::error_code ec) {
      if (ec || !sh->publishing.load() || publishers.empty()) return;
      double share = sh->opt.rate * static_cast<double>(publishers.size()) /
                     std::max<double>(1, static_cast<double>(sh->opt.publishers));
      double elapsed = static_cast<double>(now_ns() - sh->publish_start_ns.load()) / 1e9;
      auto due = static_cast<uint64_t>(elapsed * share);
      for (std::size_t tried = 0; issued < due && tried < publishers.size();) {
        auto* s = publishers[next_publisher];
        next_publisher = (next_publisher + 1) % publishers.size();
        if (s->ready && s->inflight < 10000) {
          publish_one(*s);
          ++issued;
          tried = 0;
        } else {
          ++tried;  // not ready or backed up: its turn passes; the schedule does not wait
        }
      }
      arm();
    });
  }
  uint64_t issued = 0;
  std::size_t next_publisher = 0;
};

json::object quantiles(const Histogram& h) {
  return json::object{{"p50", h.quantile(0.5)},  {"p90", h.quantile(0.9)},
                      {"p99", h.quantile(0.99)}, {"p999", h.quantile(0.999)},
                      {"max", h.max()},          {"count", h.count()}};
}

// CPU seconds of the --watch processes (each with its descendants: PostgreSQL's backends, the
// broker's Erlang VM under its start script).
std::map<std::string, double> watched_cpu(const std::vector<std::pair<std::string, int>>& w) {
  std::map<std::string, double> out;
  for (auto& [name, pid] : w) out[name] += tree_cpu_seconds(pid);
  return out;
}

void print_json(const std::string& path, const json::object& o) {
  std::string s = json::serialize(o);
  if (!path.empty()) std::ofstream(path) << s << "\n";
  std::printf("%s\n", s.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"converge-bench: load generator for Converge and its peers"};
  app.add_option("--target", opt.target,
                 "converge | tcp | ws | socketio | mqtt | mqtt-im | voice (= converge, scenario "
                 "voice)");
  app.add_option("--host", opt.host);
  app.add_option("--port", opt.ports, "the server's port; repeat it for a cluster's nodes");
  app.add_option("--ports", opt.ports,
                 "a cluster's nodes: a,b,c (the same as --port a --port b ...)")
      ->delimiter(',');
  app.add_option("--scenario", opt.scenario, "fanout | chat | idle | catchup | voice");
  app.add_option("--groups", opt.groups);
  app.add_option("--members", opt.members, "fanout: per group (20); voice: per room (50)");
  app.add_option("--publishers", opt.publishers);
  app.add_option("--rate", opt.rate, "offered messages/s in all; 0 = flat out");
  app.add_option("--window", opt.window, "messages in flight per publisher (flat out)");
  app.add_flag("--window-all", opt.window_all,
               "fanout, flat out: a message stays in its publisher's window until every member "
               "has it (default: until the publisher's own copy comes back)");
  app.add_option("--size", opt.size, "body bytes (voice: payload bytes, 80 unless given)");
  app.add_option("--client-ids", opt.client_ids,
                 "converge: each send's client_msg_id is time-ordered as the SDK's (time) or 32 "
                 "random hex digits (random)")
      ->check(CLI::IsMember({"time", "random"}));
  app.add_option("--frame-bytes", opt.frame_bytes,
                 "peers (tcp, ws, socketio, mqtt): pad each body so that a delivery takes this "
                 "many bytes on the wire, framing included (overrides --size)");
  app.add_option("--rooms", opt.rooms, "voice: rooms");
  app.add_option("--speakers", opt.speakers, "voice: speakers per room (members 0..N-1)");
  app.add_option("--fps", opt.fps, "voice: audio frames a second per speaker");
  app.add_option("--duration", opt.duration, "seconds measured");
  app.add_option("--warmup", opt.warmup, "seconds before measuring");
  app.add_option(
      "--drain", opt.drain,
      "seconds after measuring for messages in flight to arrive (counted as lost after)");
  app.add_option("--pairs", opt.pairs, "chat: conversations of two");
  app.add_option("--conns", opt.conns, "idle: connections");
  app.add_option("--users", opt.users, "idle: users the connections share");
  app.add_option("--catchup", opt.catchup, "catchup: messages the device missed");
  app.add_option("--catchup-senders", opt.catchup_senders,
                 "catchup: the missed messages are in this many direct conversations, each "
                 "with a sender of its own sending its share at once (set-up time)")
      ->check(CLI::PositiveNumber);
  app.add_option("--catchup-window", opt.catchup_window,
                 "catchup: messages awaiting their ack per sender while setting up")
      ->check(CLI::PositiveNumber);
  app.add_option("--sync-limit", opt.sync_limit, "catchup: messages per sync page asked for")
      ->check(CLI::PositiveNumber);
  app.add_option("--sources", opt.sources, "source addresses 127.0.0.1..N");
  app.add_option("--threads", opt.threads);
  app.add_option("--qos", opt.qos, "mqtt, mqtt-im: QoS of every PUBLISH and SUBSCRIBE")
      ->check(CLI::Range(0, 1));
  app.add_option("--mqtt-port", opt.mqtt_port,
                 "mqtt-im: the node's MQTT port (--port is its HTTP port)");
  app.add_option("--mqtt-version", opt.mqtt_version, "mqtt, mqtt-im: 4 = MQTT 3.1.1, 5 = MQTT 5")
      ->check(CLI::IsMember({4, 5}));
  app.add_option("--server-pid", opt.server_pid, "sample this process's RSS and CPU");
  app.add_option("--watch", opt.watch,
                 "NAME=PID: report the CPU of this process and its descendants while measuring "
                 "(repeatable)");
  app.add_flag("--hold", opt.hold,
               "idle: after measuring, write the result and keep the connections open until "
               "stdin closes");
  app.add_option("--json", opt.json_path, "write the result here too");
  app.add_option("--label", opt.label);
  CLI11_PARSE(app, argc, argv);
  if (!crypto_init()) return 1;

  raise_fd_limit();

  if (opt.ports.empty()) {
    std::fprintf(stderr, "--port (or --ports) is required\n");
    return 2;
  }
  if (opt.target == "voice") opt.target = "converge", opt.scenario = "voice";
  if (opt.scenario == "voice") {
    if (opt.ports.size() > 1 || (opt.target != "converge" && opt.target != "tcp")) {
      std::fprintf(stderr, "--scenario voice: one server, --target converge or tcp\n");
      return 2;
    }
    VoiceOptions v;
    v.target = opt.target;
    v.host = opt.host;
    v.port = opt.ports.front();
    v.rooms = opt.rooms;
    v.members = app.count("--members") ? opt.members : 50;
    v.speakers = opt.speakers;
    v.fps = opt.fps;
    v.size = app.count("--size") ? opt.size : 80;
    v.duration = opt.duration;
    v.warmup = opt.warmup;
    v.drain = app.count("--drain") ? opt.drain : 1;
    v.threads = opt.threads;
    v.sources = opt.sources;
    v.server_pid = opt.server_pid;
    v.label = opt.label;
    auto r = run_voice(v);
    if (auto* e = r.if_contains("error")) {
      std::fprintf(stderr, "%s\n", std::string(e->as_string()).c_str());
      return 1;
    }
    print_json(opt.json_path, r);
    return 0;
  }
  std::vector<std::pair<std::string, int>> watch;
  for (auto& w : opt.watch) {
    auto eq = w.find('=');
    int pid = 0;
    if (eq == std::string::npos ||
        std::from_chars(w.data() + eq + 1, w.data() + w.size(), pid).ec != std::errc{} ||
        pid <= 0) {
      std::fprintf(stderr, "--watch %s: expected NAME=PID\n", w.c_str());
      return 2;
    }
    watch.emplace_back(w.substr(0, eq), pid);
  }
  if (opt.ports.size() > 1 && opt.target != "converge") {
    std::fprintf(stderr, "several ports are for a Converge cluster only\n");
    return 2;
  }
  if (opt.target == "mqtt-im" && opt.mqtt_port == 0) {
    std::fprintf(stderr, "--target mqtt-im needs --mqtt-port\n");
    return 2;
  }
  auto target =
      make_target(opt.target, Endpoint{opt.host, opt.ports.front(), opt.ports, opt.client_ids},
                  MqttOptions{opt.qos, opt.mqtt_port, opt.mqtt_version});
  if (!target) {
    std::fprintf(stderr, "unknown target %s\n", opt.target.c_str());
    return 2;
  }
  Shared sh;
  sh.opt = opt;
  sh.target = target.get();
  sh.padding.assign(static_cast<std::size_t>(std::max(opt.size, 0)), 'x');
  sh.chat = opt.scenario == "chat";

  // Who is where.
  std::vector<std::vector<int>> groups;
  int conns = 0, users = 0;
  if (opt.scenario == "fanout") {
    for (int g = 0; g < opt.groups; ++g) {
      groups.emplace_back();
      for (int m = 0; m < opt.members; ++m) groups.back().push_back(conns++);
    }
    users = conns;
  } else if (opt.scenario == "chat") {
    for (int p = 0; p < opt.pairs; ++p) groups.push_back({conns, conns + 1}), conns += 2;
    users = conns;
    opt.publishers = sh.opt.publishers = conns;
  } else if (opt.scenario == "idle") {
    conns = opt.conns;
    users = std::min(opt.users, opt.conns);
  } else if (opt.scenario == "catchup") {
    // Connections 0..S-1 send, each in a direct conversation with the device (connection S).
    int n = opt.catchup_senders;
    for (int i = 0; i < n; ++i) groups.push_back({i, n});
    conns = n + 1;
    users = n + 1;
  } else {
    std::fprintf(stderr, "unknown scenario %s\n", opt.scenario.c_str());
    return 2;
  }
  if ((!target->stores() && opt.scenario == "chat") ||
      (target->name() != "converge" && opt.scenario == "catchup")) {
    std::fprintf(stderr, "%s: scenario %s is for converge only (chat: also mqtt-im)\n",
                 opt.target.c_str(), opt.scenario.c_str());
    return 2;
  }

  // Bodies: --size, or what makes a peer's delivery --frame-bytes long on the wire.
  sh.body_size.assign(groups.size(), static_cast<std::size_t>(std::max(opt.size, 0)));
  if (opt.frame_bytes > 0) {
    for (std::size_t g = 0; g < groups.size(); ++g) {
      int b = target->body_for_wire_bytes(static_cast<int>(g), opt.frame_bytes);
      if (b < 0) {
        std::fprintf(stderr, "--frame-bytes: target %s cannot pad its frames to %d bytes\n",
                     opt.target.c_str(), opt.frame_bytes);
        return 2;
      }
      sh.body_size[g] = static_cast<std::size_t>(b);
    }
    std::size_t most = 0;
    for (auto b : sh.body_size) most = std::max(most, b);
    sh.padding.assign(most, 'x');
  }

  auto t_prep = now_ns();
  if (auto s = target->prepare(groups, conns, std::max(users, 1)); !s) {
    std::fprintf(stderr, "prepare: %s\n", s.error().message.c_str());
    return 1;
  }
  double prepare_s = static_cast<double>(now_ns() - t_prep) / 1e9;

  // Threads and connections.
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < std::max(1, opt.threads); ++i) {
    auto w = std::make_unique<Worker>();
    w->sh = &sh;
    w->id = static_cast<std::size_t>(i);
    workers.push_back(std::move(w));
  }
  std::vector<std::unique_ptr<ConnState>> states(static_cast<std::size_t>(conns));
  for (int i = 0; i < conns; ++i) {
    auto st = std::make_unique<ConnState>();
    st->index = i;
    st->w = workers[static_cast<std::size_t>(i) % workers.size()].get();
    st->w->conns.push_back(st.get());
    states[static_cast<std::size_t>(i)] = std::move(st);
  }
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (std::size_t k = 0; k < groups[g].size(); ++k) {
      auto& st = *states[static_cast<std::size_t>(groups[g][k])];
      st.group = static_cast<int>(g);
      st.group_size = static_cast<int>(groups[g].size());
    }
  if (opt.scenario == "fanout") {
    // Publishers are spread over the groups: member k of group g for k = 0, 1, ...
    for (int p = 0; p < opt.publishers && !groups.empty(); ++p) {
      auto& g = groups[static_cast<std::size_t>(p) % groups.size()];
      std::size_t k = static_cast<std::size_t>(p) / groups.size();
      if (k < g.size()) states[static_cast<std::size_t>(g[k])]->publisher = true;
    }
  } else if (opt.scenario == "chat") {
    for (auto& st : states) st->publisher = true;
  }
  for (auto& st : states) {
    if (st->publisher) st->w->publishers.push_back(st.get());
    if (st->publisher && opt.window_all && opt.rate == 0 && opt.scenario == "fanout") {
      st->due_size = static_cast<std::size_t>(std::max(opt.window, 1)) + 1;
      st->due = std::make_unique<std::atomic<int>[]>(st->due_size);
    }
    sh.states.push_back(st.get());
  }

  std::vector<std::thread> threads;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& w : workers) guards.emplace_back(w->io.get_executor());
  for (auto& w : workers) threads.emplace_back([w = w.get()] { w->io.run(); });

  auto before = sample_process(opt.server_pid);
  auto open_conn = [&](ConnState* st) {
    Worker* w = st->w;
    std::string local = "127.0.0." + std::to_string(1 + st->index % std::max(1, opt.sources));
    Conn::Handlers h;
    h.on_open = [w, st] {
      for (auto& f : w->sh->target->on_open(st->index)) st->conn->send(f);
      if (w->sh->target->ready_on_open()) {
        st->ready = true;
        w->c.ready.fetch_add(1, std::memory_order_relaxed);
      }
    };
    h.on_message = [w, st](std::string_view f) { w->on_message(*st, f); };
    h.on_close = [w](uint16_t, const std::string&) {
      w->c.closed.fetch_add(1, std::memory_order_relaxed);
    };
    asio::post(w->io, [w, st, local, h = std::move(h)]() mutable {
      st->conn = w->sh->target->connect(w->io, st->index, local, std::move(h));
      st->conn->start();
    });
  };
  auto total = [&](auto field) {
    uint64_t n = 0;
    for (auto& w : workers) n += (w->c.*field).load();
    return n;
  };

  // Open: at most `in_flight_opens` connecting at once, so a large idle run does not flood the
  // listen queue.
  auto t_open = now_ns();
  int to_open = opt.scenario == "catchup" ? opt.catchup_senders : conns;
  const int in_flight_opens = 512;
  int opened = 0;
  auto deadline = now_ns() + static_cast<uint64_t>(120e9);
  while (now_ns() < deadline) {
    uint64_t ready = total(&Counters::ready), closed = total(&Counters::closed);
    while (opened < to_open && static_cast<uint64_t>(opened) < ready + closed + in_flight_opens)
      open_conn(states[static_cast<std::size_t>(opened++)].get());
    if (ready + closed >= static_cast<uint64_t>(to_open)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  double open_s = static_cast<double>(now_ns() - t_open) / 1e9;
  uint64_t ready = total(&Counters::ready);
  std::fprintf(stderr, "[%s %s] %llu/%d connections ready in %.2fs (%.0f/s), %llu failed\n",
               opt.target.c_str(), opt.scenario.c_str(), static_cast<unsigned long long>(ready),
               to_open, open_s, static_cast<double>(ready) / std::max(open_s, 1e-9),
               static_cast<unsigned long long>(total(&Counters::closed)));

  json::object result{{"target", opt.target},
                      {"scenario", opt.scenario},
                      {"label", opt.label},
                      {"connections", static_cast<int64_t>(ready)},
                      {"connections_failed", static_cast<int64_t>(total(&Counters::closed))},
                      {"connect_seconds", open_s},
                      {"connects_per_s", static_cast<double>(ready) / std::max(open_s, 1e-9)},
                      {"prepare_seconds", prepare_s}};
  json::object params{
      {"groups", opt.groups},     {"members", opt.members}, {"publishers", opt.publishers},
      {"rate", opt.rate},         {"window", opt.window},   {"size", opt.size},
      {"duration", opt.duration}, {"pairs", opt.pairs},     {"conns", opt.conns},
      {"catchup", opt.catchup},   {"threads", opt.threads}, {"sources", opt.sources}};
  params["nodes"] = static_cast<int64_t>(opt.ports.size());
  params["frame_bytes"] = opt.frame_bytes;
  if (opt.target == "converge") params["client_ids"] = opt.client_ids;
  if (opt.scenario == "catchup") {
    params["catchup_senders"] = opt.catchup_senders;
    params["catchup_window"] = opt.catchup_window;
    params["sync_limit"] = opt.sync_limit;
  }
  params["window_all"] = opt.window_all;
  if (opt.target.starts_with("mqtt")) {
    params["qos"] = opt.qos;
    params["mqtt_version"] = opt.mqtt_version;
  }
  result["params"] = params;

  if (opt.scenario == "idle") {
    // Every connection heartbeats once, then the server's memory is read.
    for (auto& w : workers)
      asio::post(w->io, [w = w.get()] {
        auto hb = w->sh->target->heartbeat();
        if (!hb.empty())
          for (auto* s : w->conns)
            if (s->conn) s->conn->send(hb);
      });
    std::this_thread::sleep_for(std::chrono::seconds(2));
    auto after = sample_process(opt.server_pid);
    result["server_rss_before"] = before.rss_bytes;
    result["server_rss_after"] = after.rss_bytes;
    result["server_rss_per_conn"] =
        ready ? static_cast<double>(after.rss_bytes - before.rss_bytes) / static_cast<double>(ready)
              : 0.0;
    std::fprintf(stderr, "[idle] server RSS %.1f MiB -> %.1f MiB: %.0f bytes per connection\n",
                 static_cast<double>(before.rss_bytes) / 1048576.0,
                 static_cast<double>(after.rss_bytes) / 1048576.0,
                 result["server_rss_per_conn"].as_double());
    if (opt.hold) {
      // Several generators hold their connections at once (one process cannot hold them all):
      // the result goes out now, the connections stay until whoever started us closes stdin.
      print_json(opt.json_path, result);
      std::fflush(stdout);
      char buf[256];
      while (std::fread(buf, 1, sizeof buf, stdin) > 0) {
      }
    }
  } else if (opt.scenario == "catchup") {
    // The senders (connections 0..S-1) send N messages in all, each its share with acks
    // awaited (a window each), while the device (connection S, a device that never connected)
    // is away; then the device connects and pages through sync, each page asked for as the last
    // one arrives.
    sh.chat = true;
    sh.opt.window = opt.catchup_window;
    sh.measure_start_ns = 0;
    sh.budget = opt.catchup;
    const int senders = opt.catchup_senders;
    uint64_t t_send = now_ns();
    sh.publishing = true;
    sh.publish_start_ns = t_send;
    for (int i = 0; i < senders; ++i) {
      auto* st = states[static_cast<std::size_t>(i)].get();
      if (st->ready) asio::post(st->w->io, [st] { st->w->fill_window(*st); });
    }
    auto last_progress = now_ns();
    uint64_t last_acks = 0;
    while (total(&Counters::acks) < static_cast<uint64_t>(opt.catchup)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      uint64_t a = total(&Counters::acks);
      if (a != last_acks) last_acks = a, last_progress = now_ns();
      if (now_ns() - last_progress > static_cast<uint64_t>(30e9)) {
        std::fprintf(stderr, "[catchup] no ack for 30 s (%llu of %d acked, %llu errors)\n",
                     static_cast<unsigned long long>(a), opt.catchup,
                     static_cast<unsigned long long>(total(&Counters::errors)));
        return 1;
      }
    }
    sh.publishing = false;
    double send_s = static_cast<double>(now_ns() - t_send) / 1e9;
    std::fprintf(stderr, "[catchup] %llu messages stored by %d senders in %.2fs (%.0f/s)\n",
                 static_cast<unsigned long long>(total(&Counters::acks)), senders, send_s,
                 static_cast<double>(total(&Counters::acks)) / send_s);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto* dev = states[static_cast<std::size_t>(senders)].get();
    open_conn(dev);
    for (auto until = now_ns() + static_cast<uint64_t>(30e9); !dev->ready && now_ns() < until;)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (!dev->ready) {
      std::fprintf(stderr, "[catchup] the device did not connect\n");
      return 1;
    }
    auto cpu0 = sample_process(opt.server_pid);
    auto gen0 = sample_process(static_cast<int>(::getpid()));
    uint64_t t0 = now_ns();
    asio::post(dev->w->io, [&, dev] {
      dev->conn->send(target->sync_request(++dev->next_id, "", opt.sync_limit));
    });
    while (!sh.sync_done.load()) std::this_thread::sleep_for(std::chrono::microseconds(200));
    auto cpu1 = sample_process(opt.server_pid);
    auto gen1 = sample_process(static_cast<int>(::getpid()));
    if (!sh.sync_error.empty()) {
      std::fprintf(stderr, "[catchup] sync failed: %s\n", sh.sync_error.c_str());
      return 1;
    }
    double secs = static_cast<double>(sh.sync_end_ns - t0) / 1e9;
    uint64_t got = sh.sync_messages;
    result["messages_sent"] = static_cast<int64_t>(total(&Counters::acks));
    result["senders"] = senders;
    result["send_seconds"] = send_s;
    result["messages_synced"] = static_cast<int64_t>(got);
    result["sync_pages"] = static_cast<int64_t>(sh.sync_pages);
    result["sync_bytes"] = static_cast<int64_t>(sh.sync_bytes);
    result["sync_limit"] = opt.sync_limit;
    result["sync_seconds"] = secs;
    result["sync_messages_per_s"] = static_cast<double>(got) / secs;
    if (cpu0.ok && cpu1.ok) result["server_cpu_seconds"] = cpu1.cpu_seconds - cpu0.cpu_seconds;
    if (gen0.ok && gen1.ok) result["generator_cpu_seconds"] = gen1.cpu_seconds - gen0.cpu_seconds;
    std::fprintf(stderr, "[catchup] %llu messages synced in %.3fs (%.0f/s, %llu pages)\n",
                 static_cast<unsigned long long>(got), secs, static_cast<double>(got) / secs,
                 static_cast<unsigned long long>(sh.sync_pages));
  } else {
    // fanout / chat: warm up, measure, drain.
    sh.publishing = true;
    sh.publish_start_ns = now_ns();
    for (auto& w : workers)
      asio::post(w->io, [w = w.get()] {
        if (w->sh->opt.rate > 0) {
          w->start_ticker();
        } else {
          for (auto* s : w->publishers)
            if (s->ready) w->fill_window(*s);
        }
      });
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.warmup));
    auto cpu0 = sample_process(opt.server_pid);
    auto threads0 = thread_cpu_seconds(opt.server_pid);
    auto gen0 = sample_process(static_cast<int>(::getpid()));
    auto busy0 = machine_busy_seconds();
    auto watch0 = watched_cpu(watch);
    // The bytes and segments on the server's sockets (one server, one port), by the kernel.
    const uint16_t wire_port = opt.ports.size() != 1     ? 0
                               : opt.target == "mqtt-im" ? opt.mqtt_port
                                                         : opt.ports.front();
    auto wt0 = now_ns();
    auto wd0 = total(&Counters::delivered);
    auto wire0 = wire_port ? wire_totals(wire_port) : WireTotals{};
    auto wt0b = now_ns();
    auto wd0b = total(&Counters::delivered);
    sh.measure_start_ns = now_ns();
    sh.measuring = true;
    auto start = now_ns();
    for (int sec = 0; sec < static_cast<int>(opt.duration * 10); ++sec) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (sec % 10 == 9)
        std::fprintf(stderr, "  t=%.0fs sent=%llu delivered=%llu acks=%llu errors=%llu\n",
                     static_cast<double>(now_ns() - start) / 1e9,
                     static_cast<unsigned long long>(total(&Counters::sent)),
                     static_cast<unsigned long long>(total(&Counters::delivered)),
                     static_cast<unsigned long long>(total(&Counters::acks)),
                     static_cast<unsigned long long>(total(&Counters::errors)));
    }
    sh.measure_end_ns = now_ns();
    sh.measuring = false;
    auto wt1 = now_ns();
    auto wd1 = total(&Counters::delivered);
    auto wire1 = wire_port ? wire_totals(wire_port) : WireTotals{};
    auto wt1b = now_ns();
    auto wd1b = total(&Counters::delivered);
    double secs = static_cast<double>(sh.measure_end_ns - sh.measure_start_ns) / 1e9;
    auto cpu1 = sample_process(opt.server_pid);
    auto threads1 = thread_cpu_seconds(opt.server_pid);
    auto gen1 = sample_process(static_cast<int>(::getpid()));
    auto busy1 = machine_busy_seconds();
    auto watch1 = watched_cpu(watch);
    sh.publishing = false;
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.drain));  // what is in flight
    Histogram lat, lat_same, lat_cross;
    for (auto& w : workers) {
      std::promise<void> p;
      asio::post(w->io, [&] {
        lat.merge(w->latency_us);
        lat_same.merge(w->latency_same_us);
        lat_cross.merge(w->latency_cross_us);
        p.set_value();
      });
      p.get_future().wait();
    }
    uint64_t sent_m = total(&Counters::sent_measured);
    uint64_t got_m = total(&Counters::delivered_measured);
    uint64_t expected = sh.chat ? sent_m : sent_m * static_cast<uint64_t>(std::max(opt.members, 1));
    double per_s = static_cast<double>(got_m) / secs;
    result["messages_sent"] = static_cast<int64_t>(sent_m);
    result["sent_total"] = static_cast<int64_t>(total(&Counters::sent));     // warm-up included
    result["received"] = static_cast<int64_t>(total(&Counters::delivered));  // all, unmeasured too
    result[sh.chat ? "acks" : "deliveries"] = static_cast<int64_t>(got_m);
    result["expected"] = static_cast<int64_t>(expected);
    result["lost"] = static_cast<int64_t>(expected > got_m ? expected - got_m : 0);
    result["errors"] = static_cast<int64_t>(total(&Counters::errors));
    result["seconds"] = secs;
    result[sh.chat ? "acks_per_s" : "deliveries_per_s"] = per_s;
    result["latency_us"] = quantiles(lat);
    if (got_m && !sh.chat) {
      uint64_t wb = total(&Counters::wire_bytes_measured);
      if (wb) result["delivery_wire_bytes"] = static_cast<double>(wb) / static_cast<double>(got_m);
    }
    if (wire0.ok && wire1.ok) {
      // Per second of the window between the two snapshots (each taken mid-call); per delivery:
      // over the deliveries that arrived in that window (counted on arrival, around each call).
      double ws = static_cast<double>((wt1 + wt1b) / 2 - (wt0 + wt0b) / 2) / 1e9;
      double arrived = (static_cast<double>(wd1 + wd1b) - static_cast<double>(wd0 + wd0b)) / 2;
      auto rate = [&](uint64_t a, uint64_t b) {
        return b >= a ? static_cast<double>(b - a) / ws : 0.0;
      };
      json::object wo{
          {"seconds", ws},
          {"server_sockets", wire1.server_sockets},
          {"client_sockets", wire1.client_sockets},
          {"server_bytes_sent_per_s", rate(wire0.server_bytes_sent, wire1.server_bytes_sent)},
          {"server_bytes_received_per_s",
           rate(wire0.server_bytes_received, wire1.server_bytes_received)},
          {"server_data_segs_out_per_s",
           rate(wire0.server_data_segs_out, wire1.server_data_segs_out)},
          {"generator_bytes_received_per_s",
           rate(wire0.client_bytes_received, wire1.client_bytes_received)},
          {"generator_data_segs_in_per_s",
           rate(wire0.client_data_segs_in, wire1.client_data_segs_in)}};
      wo["deliveries_arrived"] = arrived;
      if (arrived > 0 && !sh.chat) {
        auto per = [&](uint64_t a, uint64_t b) {
          return b >= a ? static_cast<double>(b - a) / arrived : 0.0;
        };
        wo["server_bytes_per_delivery"] = per(wire0.server_bytes_sent, wire1.server_bytes_sent);
        wo["generator_bytes_per_delivery"] =
            per(wire0.client_bytes_received, wire1.client_bytes_received);
        wo["server_segs_per_delivery"] =
            per(wire0.server_data_segs_out, wire1.server_data_segs_out);
      }
      result["wire"] = wo;
    }
    if (opt.ports.size() > 1 && !sh.chat) {
      result["latency_same_node_us"] = quantiles(lat_same);
      result["latency_cross_node_us"] = quantiles(lat_cross);
    }
    if (!watch.empty()) {
      json::object wo;
      for (auto& [name, t] : watch1) wo[name] = t - watch0[name];
      result["watched_cpu_seconds"] = wo;
    }
    if (cpu0.ok && cpu1.ok) {
      result["server_cpu_percent"] = 100.0 * (cpu1.cpu_seconds - cpu0.cpu_seconds) / secs;
      result["server_rss"] = cpu1.rss_bytes;
      // Where the machine's CPU went while measuring, in seconds: the server's threads by name,
      // this generator, and every CPU's busy time (softirq included, which no thread is charged).
      json::object th;
      for (auto& [name, t] : threads1) {
        auto it = threads0.find(name);
        double d = t - (it == threads0.end() ? 0.0 : it->second);
        if (d > 0) th[name] = d;
      }
      result["cpu_seconds"] =
          json::object{{"server_threads", th},
                       {"server_user", cpu1.user_seconds - cpu0.user_seconds},
                       {"server_system", cpu1.system_seconds - cpu0.system_seconds},
                       {"generator", gen1.cpu_seconds - gen0.cpu_seconds},
                       {"machine_busy", busy1 - busy0},
                       {"machine_cpus", sysconf(_SC_NPROCESSORS_ONLN)}};
    }
    std::fprintf(stderr,
                 "[%s %s] %.0f %s/s  p50 %llu us  p99 %llu us  p99.9 %llu us  max %llu us  lost "
                 "%lld  errors %llu\n",
                 opt.target.c_str(), opt.scenario.c_str(), per_s, sh.chat ? "acks" : "deliveries",
                 static_cast<unsigned long long>(lat.quantile(0.5)),
                 static_cast<unsigned long long>(lat.quantile(0.99)),
                 static_cast<unsigned long long>(lat.quantile(0.999)),
                 static_cast<unsigned long long>(lat.max()),
                 static_cast<long long>(result["lost"].as_int64()),
                 static_cast<unsigned long long>(total(&Counters::errors)));
  }

  for (auto& st : states)
    if (st->conn) asio::post(st->w->io, [c = st->conn] { c->close(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  guards.clear();
  for (auto& w : workers) w->io.stop();
  for (auto& t : threads) t.join();
  if (!(opt.scenario == "idle" && opt.hold)) print_json(opt.json_path, result);
  return 0;
}
