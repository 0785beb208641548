#include "targets.hpp"

#include <atomic>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>

#include "base/crypto.hpp"
#include "client/http.hpp"
#include "gateway/mqtt/codec/codec.hpp"

namespace converge::bench {

namespace json = boost::json;

namespace {

// memmem: string_view::find tries every '"' with a memcmp, a tenth of the generator's time.
std::string_view after(std::string_view s, std::string_view key) {
  const void* p = ::memmem(s.data(), s.size(), key.data(), key.size());
  if (!p) return {};
  auto at = static_cast<std::size_t>(static_cast<const char*>(p) - s.data());
  return s.substr(at + key.size());
}

// A server's WebSocket frame header (unmasked) for a payload of n bytes.
std::size_t ws_header(std::size_t n) {
  return n < 126 ? 2 : n < 65536 ? 4 : 10;
}
// The payload that makes a server's WebSocket frame `wire` bytes long (-1: none does).
int ws_payload_for(int wire) {
  for (int h : {2, 4, 10})
    if (int n = wire - h;
        n >= 0 && ws_header(static_cast<std::size_t>(n)) == static_cast<std::size_t>(h))
      return n;
  return -1;
}

// Converge: users and groups set up over HTTP, WebSocket with ?token=, the seed envelope.
class ConvergeTarget : public Target {
 public:
  explicit ConvergeTarget(Endpoint ep) : ep_(std::move(ep)), run_(random_hex(3)) {
    if (ep_.ports.empty()) ep_.ports.push_back(ep_.port);
    ep_.port = ep_.ports.front();
  }
  std::string name() const override { return "converge"; }
  bool stores() const override { return true; }

  Status prepare(const std::vector<std::vector<int>>& groups, int conns, int users) override {
    users_ = users;
    tokens_.resize(static_cast<std::size_t>(users));
    for (int u = 0; u < users; ++u) {
      std::string id = "b" + run_ + "_" + std::to_string(u);
      json::object reg{{"user_id", id}, {"password", "bench"}};
      auto r = client::http_call(ep_.host, ep_.port, "POST", "/api/v1/users", json::serialize(reg));
      if (!r || r->status != 201)
        return make_error(Errc::internal,
                          "register " + id + ": " + (r ? r->body : r.error().message));
      json::object login{{"user_id", id}, {"password", "bench"}, {"device_id", "bench"}};
      auto l =
          client::http_call(ep_.host, ep_.port, "POST", "/api/v1/login", json::serialize(login));
      if (!l || l->status != 200) return make_error(Errc::internal, "login " + id);
      tokens_[static_cast<std::size_t>(u)] =
          std::string(json::parse(l->body).at("token").as_string());
    }
    conv_.assign(groups.size(), "");
    conn_group_.assign(static_cast<std::size_t>(conns), -1);
    for (std::size_t g = 0; g < groups.size(); ++g) {
      json::array members;
      for (int c : groups[g]) {
        members.emplace_back("b" + run_ + "_" + std::to_string(c % users));
        conn_group_[static_cast<std::size_t>(c)] = static_cast<int>(g);
      }
      bool direct = direct_pairs_ && groups[g].size() == 2;
      json::object body{{"type", direct ? "direct" : "group"}, {"members", members}};
      auto r = client::http_call(ep_.host, ep_.port, "POST", "/api/v1/conversations",
                                 json::serialize(body), token(groups[g].front()));
      if (!r || (r->status != 201 && r->status != 200))
        return make_error(Errc::internal,
                          "create conversation: " + (r ? r->body : r.error().message));
      conv_[g] = std::string(json::parse(r->body).at("id").as_string());
    }
    return ok_status();
  }

  std::shared_ptr<Conn> connect(boost::asio::io_context& io, int conn, const std::string& local,
                                Conn::Handlers h) override {
    return make_ws_conn(io, ep_.host, ep_.ports[static_cast<std::size_t>(node_of(conn))],
                        "/ws?token=" + token(conn), local, std::move(h));
  }
  int node_of(int conn) const override {
    return static_cast<int>(static_cast<std::size_t>(conn) % ep_.ports.size());
  }
  std::vector<std::string> on_open(int) override { return {}; }
  bool ready_on_open() const override { return false; }

  std::string publish(int, int group, std::string_view body, uint64_t id) override {
    std::string f = R"({"cmd":"msg","id":)" + std::to_string(id) +
                    R"(,"data":{"conversation_id":")" + conv_[static_cast<std::size_t>(group)] +
                    R"(","type":"text","body":")";
    f += body;
    f += R"(","client_msg_id":")";
    append_client_msg_id(f);
    f += "\"}}";
    return f;
  }

  // 32 hex digits (Endpoint::client_ids): "time" is the SDK's layout, 12 digits of
  // milliseconds, 4 of a counter, 16 random; "random" all 32 random.
  void append_client_msg_id(std::string& f) const {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    thread_local uint16_t counter = 0;
    char b[33];
    if (ep_.client_ids == "random") {
      std::snprintf(b, sizeof b, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                    static_cast<unsigned long long>(rng()));
    } else {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
      std::snprintf(b, sizeof b, "%012llx%04x%016llx",
                    static_cast<unsigned long long>(ms) & 0xffffffffffffULL,
                    static_cast<unsigned>(counter++), static_cast<unsigned long long>(rng()));
    }
    f.append(b, 32);
  }

  Parsed parse(std::string_view f) const override {
    if (f.starts_with(R"({"cmd":"msg")")) {
      auto b = after(f, R"("body":")");
      return {Kind::delivery, b.substr(0, b.find('"'))};
    }
    if (f.starts_with(R"({"cmd":"ack")")) {
      auto id = after(f, R"("id":)");
      return {Kind::ack, id.substr(0, id.find(','))};
    }
    if (f.starts_with(R"({"cmd":"ready")")) return {Kind::ready, {}};
    if (f.starts_with(R"({"cmd":"error")")) return {Kind::error, f};
    if (f.starts_with(R"({"cmd":"sync")")) return {Kind::other, f};
    return {};
  }

  std::string heartbeat() const override { return R"({"cmd":"heartbeat","data":{}})"; }
  std::size_t delivery_wire_bytes(std::string_view f, int) const override {
    return f.size() + ws_header(f.size());
  }

  std::string sync_request(uint64_t id, const std::string& cursor, int limit) const override {
    std::string f = R"({"cmd":"sync","id":)" + std::to_string(id) + R"(,"data":{"limit":)" +
                    std::to_string(limit);
    if (!cursor.empty()) f += R"(,"cursor":")" + cursor + "\"";
    return f + "}}";
  }

 protected:
  const std::string& token(int conn) const {
    return tokens_[static_cast<std::size_t>(conn % users_)];
  }
  std::string user_id(int conn) const { return "b" + run_ + "_" + std::to_string(conn % users_); }
  Endpoint ep_;
  std::string run_;  // distinguishes the users of one bench run from earlier runs on the node
  bool direct_pairs_ = true;  // a group of two is a direct conversation
  int users_ = 1;
  std::vector<std::string> tokens_;
  std::vector<std::string> conv_;
  std::vector<int> conn_group_;
};

// Peers that take the group from the connection (a URL query or a join frame).
class PeerTarget : public Target {
 public:
  explicit PeerTarget(Endpoint ep) : ep_(std::move(ep)) {}
  Status prepare(const std::vector<std::vector<int>>& groups, int conns, int) override {
    group_.assign(static_cast<std::size_t>(conns), 0);
    for (std::size_t g = 0; g < groups.size(); ++g)
      for (int c : groups[g]) group_[static_cast<std::size_t>(c)] = static_cast<int>(g);
    return ok_status();
  }

 protected:
  int group(int conn) const { return group_[static_cast<std::size_t>(conn)]; }
  Endpoint ep_;
  std::vector<int> group_;
};

// The ceiling: [u32 len]["J" group] joins, ["P" body] is sent to every member of the group.
class TcpTarget final : public PeerTarget {
 public:
  using PeerTarget::PeerTarget;
  std::string name() const override { return "tcp"; }
  std::shared_ptr<Conn> connect(boost::asio::io_context& io, int, const std::string& local,
                                Conn::Handlers h) override {
    return make_tcp_conn(io, ep_.host, ep_.port, local, std::move(h));
  }
  std::vector<std::string> on_open(int conn) override {
    return {"J" + std::to_string(group(conn))};
  }
  bool ready_on_open() const override { return true; }
  std::string publish(int, int, std::string_view body, uint64_t) override {
    return "P" + std::string(body);
  }
  Parsed parse(std::string_view f) const override {
    if (f.starts_with("P")) return {Kind::delivery, f.substr(1)};
    return {};
  }
  // [u32 len]["P"][body], re-sent as it came.
  std::size_t delivery_wire_bytes(std::string_view f, int) const override { return 4 + f.size(); }
  int body_for_wire_bytes(int, int wire) const override { return wire - 5; }
};

// A Node `ws` server broadcasting each text frame to its room (?room=g).
class NodeWsTarget final : public PeerTarget {
 public:
  using PeerTarget::PeerTarget;
  std::string name() const override { return "ws"; }
  std::shared_ptr<Conn> connect(boost::asio::io_context& io, int conn, const std::string& local,
                                Conn::Handlers h) override {
    return make_ws_conn(io, ep_.host, ep_.port, "/?room=" + std::to_string(group(conn)), local,
                        std::move(h));
  }
  std::vector<std::string> on_open(int) override { return {}; }
  bool ready_on_open() const override { return true; }
  std::string publish(int, int, std::string_view body, uint64_t) override {
    return std::string(body);
  }
  Parsed parse(std::string_view f) const override { return {Kind::delivery, f}; }
  std::size_t delivery_wire_bytes(std::string_view f, int) const override {
    return f.size() + ws_header(f.size());
  }
  int body_for_wire_bytes(int, int wire) const override { return ws_payload_for(wire); }
};

// socket.io 4 (engine.io 4 over WebSocket): "40" connects, 42["msg",body] events, "2"/"3" pings.
class SocketIoTarget final : public PeerTarget {
 public:
  using PeerTarget::PeerTarget;
  std::string name() const override { return "socketio"; }
  std::shared_ptr<Conn> connect(boost::asio::io_context& io, int conn, const std::string& local,
                                Conn::Handlers h) override {
    return make_ws_conn(io, ep_.host, ep_.port,
                        "/socket.io/?EIO=4&transport=websocket&room=" + std::to_string(group(conn)),
                        local, std::move(h));
  }
  std::vector<std::string> on_open(int) override { return {"40"}; }
  bool ready_on_open() const override { return false; }
  std::string publish(int, int, std::string_view body, uint64_t) override {
    return "42[\"msg\",\"" + std::string(body) + "\"]";
  }
  Parsed parse(std::string_view f) const override {
    if (f.starts_with("42[\"msg\",\"")) {
      auto b = f.substr(10);  // after 42["msg","
      return {Kind::delivery, b.substr(0, b.find('"'))};
    }
    if (f.starts_with("40")) return {Kind::ready, {}};
    if (f == "2") return {Kind::ping, {}};
    return {};
  }
  std::string pong(std::string_view) const override { return "3"; }
  std::size_t delivery_wire_bytes(std::string_view f, int) const override {
    return f.size() + ws_header(f.size());
  }
  int body_for_wire_bytes(int, int wire) const override {  // 42["msg","<body>"]
    int n = ws_payload_for(wire);
    return n < 0 ? -1 : n - 12;
  }
};

// ---- MQTT ----

// Events the MQTT adapter hands the generator start with \x01 (no payload of ours does: the
// generator's bodies start with a digit, the IM namespace's deliveries with '{').
constexpr char kEvent = '\x01';
constexpr std::string_view kReady = "\001R", kAck = "\001A", kError = "\001E";

// One connection's MQTT: a client decoder over the stream, CONNACK answered with the
// connection's SUBSCRIBE (or taken as ready when it has none), SUBACK taken as ready, a QoS 1
// delivery acked with PUBACK at once; the generator sees a delivery's payload, PUBACKs (ack) and
// refusals (error).
class MqttLink : public std::enable_shared_from_this<MqttLink> {
 public:
  MqttLink(mqtt::Version v, std::vector<std::string> filters, int qos, Conn::Handlers up)
      : v_(v),
        dec_(mqtt::Decoder::for_client(v)),
        filters_(std::move(filters)),
        qos_(qos),
        up_(std::move(up)) {}

  // The handlers the stream calls: bytes go through the decoder.
  Conn::Handlers handlers() {
    Conn::Handlers h;
    h.on_open = up_.on_open;
    h.on_close = up_.on_close;
    h.on_message = [self = shared_from_this()](std::string_view bytes) { self->on_bytes(bytes); };
    return h;
  }
  void attach(const std::shared_ptr<Conn>& c) { conn_ = c; }

 private:
  // What one read brought is answered in one write (the PUBACKs of a burst of deliveries).
  void on_bytes(std::string_view bytes) {
    dec_.feed(bytes);
    while (auto p = dec_.next()) std::visit([this](auto& x) { on_packet(x); }, *p);
    if (dec_.failed()) error("decode: " + dec_.error().message);
    if (!out_.empty())
      if (auto c = conn_.lock()) c->send(out_);
    out_.clear();
    if (dec_.failed())
      if (auto c = conn_.lock()) c->close();
  }
  void send(const mqtt::Packet& p) { mqtt::encode(out_, p, v_); }
  void event(std::string_view e) {
    if (up_.on_message) up_.on_message(e);
  }
  void error(const std::string& why) {
    static std::atomic<int> shown{0};
    if (shown.fetch_add(1) < 5) std::fprintf(stderr, "mqtt: %s\n", why.c_str());
    event(kError);
  }

  void on_packet(mqtt::Connack& a) {
    if (a.reason_code != 0)
      return error("CONNACK refused: reason " + std::to_string(a.reason_code));
    if (filters_.empty()) return event(kReady);
    mqtt::Subscribe s;
    s.packet_id = 1;
    for (auto& f : filters_) {
      mqtt::Subscription sub;
      sub.filter = f;
      sub.options.qos = static_cast<uint8_t>(qos_);
      s.subscriptions.push_back(std::move(sub));
    }
    send(s);
  }
  void on_packet(mqtt::Suback& a) {
    for (auto rc : a.reason_codes)
      if (rc >= 0x80) return error("SUBACK refused: reason " + std::to_string(rc));
    event(kReady);
  }
  void on_packet(mqtt::Publish& p) {
    if (p.qos == 1) {  // the generator subscribes at QoS 0 or 1
      mqtt::Ack ack;
      ack.type = mqtt::PacketType::puback;
      ack.packet_id = p.packet_id;
      send(ack);
    }
    if (!p.payload.empty() && p.payload[0] != kEvent) event(p.payload);
  }
  void on_packet(mqtt::Ack& a) {
    if (a.type != mqtt::PacketType::puback) return;  // QoS 1 only
    if (a.reason_code >= 0x80)
      return error("PUBACK refused: reason " + std::to_string(a.reason_code));
    event(kAck);
  }
  void on_packet(mqtt::Disconnect& d) {
    error("DISCONNECT from the server: reason " + std::to_string(d.reason_code));
  }
  template <class P>
  void on_packet(P&) {}  // PINGRESP, UNSUBACK, AUTH: nothing to do

  mqtt::Version v_;
  mqtt::Decoder dec_;
  std::vector<std::string> filters_;
  int qos_;
  Conn::Handlers up_;
  std::weak_ptr<Conn> conn_;
  std::string out_;
};

std::shared_ptr<Conn> mqtt_connect(boost::asio::io_context& io, const std::string& host,
                                   uint16_t port, const std::string& local, Conn::Handlers h,
                                   mqtt::Version v, std::vector<std::string> filters, int qos) {
  auto link = std::make_shared<MqttLink>(v, std::move(filters), qos, std::move(h));
  auto c = make_stream_conn(io, host, port, local, link->handlers());
  link->attach(c);
  return c;
}

std::string mqtt_connect_packet(mqtt::Version v, std::string client_id,
                                std::optional<std::string> user, std::optional<std::string> pass) {
  mqtt::Connect c;
  c.version = v;
  c.client_id = std::move(client_id);
  c.clean_start = true;
  c.keep_alive = 0;  // no keepalive: the idle scenario pings once itself
  c.username = std::move(user);
  c.password = std::move(pass);
  return mqtt::encode(mqtt::Packet{std::move(c)}, v);
}

std::string mqtt_publish_packet(mqtt::Version v, std::string topic, std::string_view body, int qos,
                                uint64_t id) {
  mqtt::Publish p;
  p.topic = std::move(topic);
  p.payload.assign(body);
  p.qos = static_cast<uint8_t>(qos);
  // Ids in flight on one connection are fewer than 65535 (the window, or the ticker's cap).
  if (qos > 0) p.packet_id = static_cast<uint16_t>(id % 65535 + 1);
  std::string out;
  mqtt::encode(out, p, v);
  return out;
}

Parsed mqtt_event(std::string_view f) {
  if (f == kReady) return {Kind::ready, {}};
  if (f == kAck) return {Kind::ack, {}};
  if (f == kError) return {Kind::error, f};
  return {};
}

mqtt::Version mqtt_version(int level) {
  return level == 5 ? mqtt::Version::v5 : mqtt::Version::v311;
}

// Any MQTT broker on general topics: group g is topic bench/g<g>, every member subscribes to it
// and publishers publish to it (anonymous clients; Converge needs --mqtt-allow-anonymous true and
// an ACL granting readwrite bench/#). The idle scenario's connections subscribe to a topic each.
class MqttTarget final : public PeerTarget {
 public:
  MqttTarget(Endpoint ep, MqttOptions o) : PeerTarget(std::move(ep)), o_(o), run_(random_hex(3)) {}
  std::string name() const override { return "mqtt"; }
  bool acks_publishes() const override { return o_.qos > 0; }
  Status prepare(const std::vector<std::vector<int>>& groups, int conns, int users) override {
    idle_ = groups.empty();
    return PeerTarget::prepare(groups, conns, users);
  }
  std::shared_ptr<Conn> connect(boost::asio::io_context& io, int conn, const std::string& local,
                                Conn::Handlers h) override {
    std::string filter =
        idle_ ? "bench/idle/" + std::to_string(conn) : "bench/g" + std::to_string(group(conn));
    return mqtt_connect(io, ep_.host, ep_.port, local, std::move(h), mqtt_version(o_.version),
                        {filter}, o_.qos);
  }
  std::vector<std::string> on_open(int conn) override {
    return {mqtt_connect_packet(mqtt_version(o_.version),
                                "bench-" + run_ + "-" + std::to_string(conn), std::nullopt,
                                std::nullopt)};
  }
  bool ready_on_open() const override { return false; }
  std::string publish(int, int group, std::string_view body, uint64_t id) override {
    return mqtt_publish_packet(mqtt_version(o_.version), "bench/g" + std::to_string(group), body,
                               o_.qos, id);
  }
  Parsed parse(std::string_view f) const override {
    if (!f.empty() && f[0] == kEvent) return mqtt_event(f);
    return {Kind::delivery, f};
  }
  std::string heartbeat() const override {
    return mqtt::encode(mqtt::Packet{mqtt::Pingreq{}}, mqtt_version(o_.version));
  }
  // A PUBLISH to a subscriber of bench/g<group>: fixed header byte, remaining length (a varint),
  // topic (u16 length and its bytes), a packet id at QoS 1, MQTT 5's properties length (empty:
  // one byte), the payload.
  std::size_t delivery_wire_bytes(std::string_view f, int group) const override {
    std::size_t rest = publish_overhead(group) + f.size();
    return 1 + varint_len(rest) + rest;
  }
  int body_for_wire_bytes(int group, int wire) const override {
    for (int v = 1; v <= 4; ++v) {
      int rest = wire - 1 - v;
      if (rest >= 0 && varint_len(static_cast<std::size_t>(rest)) == static_cast<std::size_t>(v))
        return rest - static_cast<int>(publish_overhead(group));
    }
    return -1;
  }

 private:
  static std::size_t varint_len(std::size_t n) {
    return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
  }
  std::size_t publish_overhead(int group) const {
    return 2 + ("bench/g" + std::to_string(group)).size() + (o_.qos > 0 ? 2 : 0) +
           (o_.version == 5 ? 1 : 0);
  }
  MqttOptions o_;
  std::string run_;
  bool idle_ = false;
};

// Converge's IM namespace over MQTT: users and groups set up over HTTP as for `converge`, then
// CONNECT with username = user id, password = token, client id = a device id of the connection's
// own; each member subscribes to group/<gid>/inbox/+ and publishes plain text to
// group/<gid>/inbox/<self> (stored, PUBACK once stored); a delivery is the stored message JSON.
// Pairs (the chat scenario) are groups of two: the group topics need a group. The idle
// scenario's connections subscribe to their user/<self>/inbox/+.
class MqttImTarget final : public ConvergeTarget {
 public:
  MqttImTarget(Endpoint ep, MqttOptions o) : ConvergeTarget(std::move(ep)), o_(o) {
    direct_pairs_ = false;
  }
  std::string name() const override { return "mqtt-im"; }
  bool acks_publishes() const override { return o_.qos > 0; }
  std::shared_ptr<Conn> connect(boost::asio::io_context& io, int conn, const std::string& local,
                                Conn::Handlers h) override {
    int g = conn_group_[static_cast<std::size_t>(conn)];
    std::string filter = g < 0 ? "user/" + user_id(conn) + "/inbox/+"
                               : "group/" + conv_[static_cast<std::size_t>(g)] + "/inbox/+";
    return mqtt_connect(io, ep_.host, o_.port, local, std::move(h), mqtt_version(o_.version),
                        {filter}, o_.qos);
  }
  std::vector<std::string> on_open(int conn) override {
    return {mqtt_connect_packet(mqtt_version(o_.version), "d" + run_ + "-" + std::to_string(conn),
                                user_id(conn), token(conn))};
  }
  std::string publish(int conn, int group, std::string_view body, uint64_t id) override {
    return mqtt_publish_packet(
        mqtt_version(o_.version),
        "group/" + conv_[static_cast<std::size_t>(group)] + "/inbox/" + user_id(conn), body, o_.qos,
        id);
  }
  Parsed parse(std::string_view f) const override {
    if (!f.empty() && f[0] == kEvent) return mqtt_event(f);
    auto b = after(f, R"("body":")");
    if (b.empty()) return {};
    return {Kind::delivery, b.substr(0, b.find('"'))};
  }
  std::string heartbeat() const override {
    return mqtt::encode(mqtt::Packet{mqtt::Pingreq{}}, mqtt_version(o_.version));
  }

 private:
  MqttOptions o_;
};

}  // namespace

std::unique_ptr<Target> make_target(const std::string& name, Endpoint ep, MqttOptions mqtt) {
  if (name == "converge") return std::make_unique<ConvergeTarget>(std::move(ep));
  if (name == "tcp") return std::make_unique<TcpTarget>(std::move(ep));
  if (name == "ws") return std::make_unique<NodeWsTarget>(std::move(ep));
  if (name == "socketio") return std::make_unique<SocketIoTarget>(std::move(ep));
  if (name == "mqtt") return std::make_unique<MqttTarget>(std::move(ep), mqtt);
  if (name == "mqtt-im") return std::make_unique<MqttImTarget>(std::move(ep), mqtt);
  return nullptr;
}

}  // namespace converge::bench
