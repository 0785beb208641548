// The RabbitMQ bus engine against a real broker (one private RabbitMQ per test binary, see
// test_broker.hpp): two engines, node A and node B, in one process, and a plain rabbitmq-c client
// that looks at the broker from outside (passive declares, basic.get, a reply_to queue).
//
// Absence is proven by a round trip, never by sleeping: what must not arrive is followed by
// something that must, on the same path (one publisher channel into one queue keeps its order).
#include "bus/rabbitmq/rabbitmq_bus.hpp"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "base/metrics.hpp"
#include "bus/rabbitmq/test_broker.hpp"

using namespace converge;
using namespace std::chrono_literals;

namespace {

constexpr auto kWait = 10s;  // for what must arrive: generous, a round trip takes milliseconds

std::string node_name(const char* role) {
  static int n = 0;
  return std::string(role) + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++);
}

// ---- the engine's callbacks, as the node's proto layer would give them ----

std::shared_ptr<const std::string> test_frame(const Delivery& d) {
  return std::make_shared<const std::string>(
      "{\"cmd\":\"msg\",\"data\":{\"conversation_id\":\"" + std::to_string(d.msg.conversation_id) +
      "\",\"seq\":" + std::to_string(d.msg.seq) + ",\"body\":\"" + d.msg.body + "\"}}");
}

const char* kind_name(Notice::Kind k) {
  switch (k) {
    case Notice::Kind::event:
      return "event";
    case Notice::Kind::broadcast:
      return "broadcast";
    case Notice::Kind::conversation:
      return "conversation";
    case Notice::Kind::revoke:
      return "revoke";
    case Notice::Kind::node:
      return "node";
    case Notice::Kind::admin:
      return "admin";
  }
  return "?";
}

// kind|user_id|payload: enough to check what crossed.
std::string test_encode(const Notice& n) {
  return std::string(kind_name(n.kind)) + "|" + n.user_id + "|" + n.payload_json;
}

std::shared_ptr<const Notice> test_decode(std::string_view s) {
  auto a = s.find('|');
  auto b = a == std::string_view::npos ? a : s.find('|', a + 1);
  if (b == std::string_view::npos) return nullptr;
  auto n = std::make_shared<Notice>();
  auto kind = s.substr(0, a);
  if (kind == "event")
    n->kind = Notice::Kind::event;
  else if (kind == "broadcast")
    n->kind = Notice::Kind::broadcast;
  else if (kind == "conversation")
    n->kind = Notice::Kind::conversation;
  else if (kind == "revoke")
    n->kind = Notice::Kind::revoke;
  else if (kind == "admin")
    n->kind = Notice::Kind::admin;
  else
    return nullptr;
  n->user_id = std::string(s.substr(a + 1, b - a - 1));
  n->payload_json = std::string(s.substr(b + 1));
  return n;
}

std::shared_ptr<const Notice> notice(Notice::Kind k, std::string user, std::string payload) {
  auto n = std::make_shared<Notice>();
  n->kind = k;
  n->user_id = std::move(user);
  n->payload_json = std::move(payload);
  return n;
}

std::shared_ptr<const Delivery> delivery(ConversationId c, Seq s, std::string body,
                                         int64_t members_version = 1) {
  auto d = std::make_shared<Delivery>();
  d->msg.conversation_id = c;
  d->msg.seq = s;
  d->msg.body = std::move(body);
  d->members_version = members_version;
  return d;
}

// ---- a node's listener: records everything, lets the test wait for it ----

class Recorder final : public BusListener {
 public:
  struct Transient {
    std::string key, origin, payload;
  };

  void on_delivery(const std::shared_ptr<const Delivery>& d) override {
    std::lock_guard lk(mu_);
    local_.push_back(d);
    cv_.notify_all();
  }
  void on_notice(const std::shared_ptr<const Notice>& n) override {
    std::lock_guard lk(mu_);
    notices_.push_back(n->payload_json);
    notice_kinds_.push_back(n->kind);
    cv_.notify_all();
  }
  void on_remote_messages(std::vector<RemoteMessage> batch) override {
    std::lock_guard lk(mu_);
    for (auto& m : batch) remote_.push_back(std::move(m));
    cv_.notify_all();
  }
  void on_transient(const std::string& key, const std::string& origin,
                    std::shared_ptr<const std::string> payload) override {
    std::lock_guard lk(mu_);
    transient_.push_back({key, origin, *payload});
    cv_.notify_all();
  }
  void on_center_request(CenterRequest r) override {
    std::lock_guard lk(mu_);
    center_.push_back(std::move(r));
    cv_.notify_all();
  }
  void on_bus_restored() override {
    std::lock_guard lk(mu_);
    ++restored_;
    cv_.notify_all();
  }

  // Waits until pred() (called under the lock) holds.
  bool wait(const std::function<bool()>& pred, std::chrono::milliseconds t = kWait) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, t, pred);
  }
  template <class F>
  auto with(F&& f) {
    std::lock_guard lk(mu_);
    return f();
  }

  std::vector<std::shared_ptr<const Delivery>> local_;
  std::vector<std::string> notices_;  // payloads, in arrival order
  std::vector<Notice::Kind> notice_kinds_;
  std::vector<RemoteMessage> remote_;
  std::vector<Transient> transient_;
  std::vector<CenterRequest> center_;
  int restored_ = 0;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

// One engine with its listener and metrics (the bus is declared last: it goes first).
struct Node {
  std::string id;
  Metrics metrics;
  Recorder rec;
  std::unique_ptr<Bus> bus;
};

RabbitMqOptions options_for(const std::string& url, const std::string& id, Metrics* m) {
  RabbitMqOptions o;
  o.url = url;
  o.node_id = id;
  o.metrics = m;
  o.message_frame = test_frame;
  o.encode_notice = test_encode;
  o.decode_notice = test_decode;
  return o;
}

// Waits until every bind_* request made so far is in effect.
void bound(Bus& bus) {
  auto p = std::make_shared<std::promise<void>>();
  auto f = p->get_future();
  bus.when_bound([p] { p->set_value(); });
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready) << "when_bound never called";
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds t = kWait) {
  const auto until = std::chrono::steady_clock::now() + t;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Shuts down every TCP connection of this process to the broker's port, under the engines:
// what a broker crash or a network cut looks like to them.
int cut_broker_sockets(int port) {
  int n = 0;
  std::vector<int> fds;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    try {
      fds.push_back(std::stoi(e.path().filename().string()));
    } catch (...) {
    }
  }
  for (int fd : fds) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) continue;
    if (ss.ss_family != AF_INET) continue;
    if (ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port) != port) continue;
    ::shutdown(fd, SHUT_RDWR);
    ++n;
  }
  return n;
}

// ---- a plain AMQP client (rabbitmq-c), looking at the broker from outside ----

class Raw {
 public:
  explicit Raw(const std::string& url) {
    std::string buf = url;
    amqp_connection_info info;
    amqp_default_connection_info(&info);
    if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK) return;
    c_ = amqp_new_connection();
    auto* sock = amqp_tcp_socket_new(c_);
    if (amqp_socket_open(sock, info.host, info.port) != AMQP_STATUS_OK) return;
    auto r = amqp_login(c_, *info.vhost ? info.vhost : "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                        info.user, info.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return;
    ok_ = open_channel(1);
  }
  ~Raw() {
    if (c_) {
      if (ok_) amqp_connection_close(c_, AMQP_REPLY_SUCCESS);
      amqp_destroy_connection(c_);
    }
  }
  bool ok() const { return ok_; }

  // The reply code of a declare on a fresh channel: 200, or the broker's (404 not found, 405
  // locked by an exclusive owner, 406 inequivalent).
  int exchange_declare(const std::string& name, const char* type, bool passive) {
    auto ch = next_channel();
    amqp_exchange_declare(c_, ch, amqp_cstring_bytes(name.c_str()), amqp_cstring_bytes(type),
                          passive, 1, 0, 0, amqp_empty_table);
    return finish(ch);
  }
  struct QueueState {
    int code = 0;
    uint32_t messages = 0;
    uint32_t consumers = 0;
  };
  QueueState queue_declare(const std::string& name, bool passive, bool durable = true) {
    auto ch = next_channel();
    auto* ok = amqp_queue_declare(c_, ch, amqp_cstring_bytes(name.c_str()), passive, durable, 0, 0,
                                  amqp_empty_table);
    QueueState s;
    if (ok) {
      s.messages = ok->message_count;
      s.consumers = ok->consumer_count;
    }
    s.code = finish(ch);
    return s;
  }
  void purge(const std::string& queue) {
    amqp_queue_purge(c_, 1, amqp_cstring_bytes(queue.c_str()));
  }
  // A server-named queue of this connection (a client's reply_to).
  std::string reply_queue() {
    auto* ok = amqp_queue_declare(c_, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    if (!ok) return {};
    std::string name(static_cast<char*>(ok->queue.bytes), ok->queue.len);
    amqp_basic_consume(c_, 1, ok->queue, amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
    return name;
  }
  bool publish(const std::string& exchange, const std::string& key, const std::string& body,
               const std::string& reply_to = "", const std::string& correlation_id = "") {
    amqp_basic_properties_t p{};
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    if (!reply_to.empty()) {
      p._flags |= AMQP_BASIC_REPLY_TO_FLAG;
      p.reply_to = amqp_cstring_bytes(reply_to.c_str());
    }
    if (!correlation_id.empty()) {
      p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
      p.correlation_id = amqp_cstring_bytes(correlation_id.c_str());
    }
    return amqp_basic_publish(c_, 1, amqp_cstring_bytes(exchange.c_str()),
                              amqp_cstring_bytes(key.c_str()), 0, 0, &p,
                              amqp_cstring_bytes(body.c_str())) == AMQP_STATUS_OK;
  }
  struct Got {
    std::string body;
    std::string correlation_id;
    int delivery_mode = 0;
    std::map<std::string, std::string> text_headers;
  };
  // basic.get (no ack), retried until something is there or `t` passes.
  std::optional<Got> get(const std::string& queue, std::chrono::milliseconds t = kWait) {
    const auto until = std::chrono::steady_clock::now() + t;
    for (;;) {
      auto r = amqp_basic_get(c_, 1, amqp_cstring_bytes(queue.c_str()), 1);
      if (r.reply_type != AMQP_RESPONSE_NORMAL) return std::nullopt;
      if (r.reply.id == AMQP_BASIC_GET_OK_METHOD) {
        amqp_message_t m;
        if (amqp_read_message(c_, 1, &m, 0).reply_type != AMQP_RESPONSE_NORMAL) return std::nullopt;
        Got g = to_got(m);
        amqp_destroy_message(&m);
        return g;
      }
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
      std::this_thread::sleep_for(10ms);
    }
  }
  // The next delivery to this connection's consumers (the reply queue).
  std::optional<Got> next(std::chrono::milliseconds t = kWait) {
    amqp_envelope_t env;
    timeval tv{static_cast<time_t>(t.count() / 1000),
               static_cast<suseconds_t>(t.count() % 1000 * 1000)};
    amqp_maybe_release_buffers(c_);
    auto r = amqp_consume_message(c_, &env, &tv, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) return std::nullopt;
    Got g = to_got(env.message);
    amqp_destroy_envelope(&env);
    return g;
  }

 private:
  static Got to_got(const amqp_message_t& m) {
    Got g;
    g.body.assign(static_cast<const char*>(m.body.bytes), m.body.len);
    const auto& p = m.properties;
    if (p._flags & AMQP_BASIC_CORRELATION_ID_FLAG)
      g.correlation_id.assign(static_cast<const char*>(p.correlation_id.bytes),
                              p.correlation_id.len);
    if (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) g.delivery_mode = p.delivery_mode;
    if (p._flags & AMQP_BASIC_HEADERS_FLAG)
      for (int i = 0; i < p.headers.num_entries; ++i) {
        auto& e = p.headers.entries[i];
        if (e.value.kind != AMQP_FIELD_KIND_UTF8) continue;
        g.text_headers[std::string(static_cast<const char*>(e.key.bytes), e.key.len)] = std::string(
            static_cast<const char*>(e.value.value.bytes.bytes), e.value.value.bytes.len);
      }
    return g;
  }
  bool open_channel(amqp_channel_t ch) {
    amqp_channel_open(c_, ch);
    return amqp_get_rpc_reply(c_).reply_type == AMQP_RESPONSE_NORMAL;
  }
  amqp_channel_t next_channel() {
    auto ch = next_++;
    open_channel(ch);
    return ch;
  }
  // The outcome of the RPC just made on `ch`; the channel is closed either way.
  int finish(amqp_channel_t ch) {
    auto r = amqp_get_rpc_reply(c_);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      amqp_channel_close(c_, ch, AMQP_REPLY_SUCCESS);
      return 200;
    }
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      int code = static_cast<amqp_channel_close_t*>(r.reply.decoded)->reply_code;
      amqp_channel_close_ok_t ok{};
      amqp_send_method(c_, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      return code;
    }
    return -1;
  }

  amqp_connection_state_t c_ = nullptr;
  bool ok_ = false;
  amqp_channel_t next_ = 2;
};

class RabbitMqBusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = amqptest::skip_reason(); !why.empty()) GTEST_SKIP() << why;
    auto b = amqptest::broker();
    ASSERT_TRUE(b) << b.error().message;
    broker_ = b.value();
  }

  std::unique_ptr<Node> start_node(const char* role,
                                   const std::function<void(RabbitMqOptions&)>& tweak = {},
                                   bool listen = true) {
    auto n = std::make_unique<Node>();
    n->id = node_name(role);
    auto o = options_for(broker_.url, n->id, &n->metrics);
    if (tweak) tweak(o);
    auto bus = make_rabbitmq_bus(std::move(o));
    EXPECT_TRUE(bus) << (bus ? "" : bus.error().message);
    if (!bus) return nullptr;
    n->bus = std::move(bus.value());
    if (listen) n->bus->set_listener(&n->rec);
    return n;
  }

  amqptest::Broker broker_;
};

// ---- topology ----

TEST_F(RabbitMqBusTest, DeclaresSeedTopologyIdempotently) {
  // No listener: the engine declares everything but consumes nothing, so what is published
  // here stays in the queues for the counting below.
  auto a = start_node("a", {}, false);
  ASSERT_TRUE(a);
  auto again = start_node("a2", {}, false);  // a second node declares the same, idempotently
  ASSERT_TRUE(again);
  Raw raw(broker_.url);
  ASSERT_TRUE(raw.ok());

  const std::pair<const char*, const char*> exchanges[] = {{"conversation.outgoing", "fanout"},
                                                           {"conversation.incoming", "topic"},
                                                           {"exchange_base", "topic"},
                                                           {"exchange_comm_gb", "topic"},
                                                           {"converge.transient", "topic"}};
  for (auto [name, type] : exchanges) {
    EXPECT_EQ(raw.exchange_declare(name, type, true), 200) << name;
    // Same type, durable: accepted; another type is inequivalent (406).
    EXPECT_EQ(raw.exchange_declare(name, type, false), 200) << name;
    EXPECT_EQ(raw.exchange_declare(name, std::string(type) == "topic" ? "fanout" : "topic", false),
              406)
        << name;
  }
  for (const char* q : {"chat-app-message", "queue_center", "queue_balance", "queue_comm_gb"}) {
    EXPECT_EQ(raw.queue_declare(q, true).code, 200) << q;
    EXPECT_EQ(raw.queue_declare(q, false, true).code, 200) << q << " is durable";
    EXPECT_EQ(raw.queue_declare(q, false, false).code, 406) << q << " is durable";
  }
  // The node's queues exist, exclusive to its consumer connection (405: locked).
  EXPECT_EQ(raw.queue_declare("converge.node." + a->id, true).code, 405);
  EXPECT_EQ(raw.queue_declare("converge.node." + a->id + ".transient", true).code, 405);
  EXPECT_EQ(raw.queue_declare("converge.node.nobody-" + a->id, true).code, 404);
  if (broker_.owned) {  // their flags and arguments, as the broker has them
    auto out = amqptest::rabbitmqctl({"list_queues", "--no-table-headers", "-q", "name", "durable",
                                      "auto_delete", "exclusive", "arguments"});
    ASSERT_TRUE(out) << out.error().message;
    std::map<std::string, std::string> rows;
    std::istringstream in(out.value());
    for (std::string line; std::getline(in, line);) {
      auto tab = line.find('\t');
      if (tab != std::string::npos) rows[line.substr(0, tab)] = line.substr(tab + 1);
    }
    EXPECT_EQ(rows["converge.node." + a->id], "false\ttrue\ttrue\t[]");
    const auto transient = rows["converge.node." + a->id + ".transient"];
    EXPECT_EQ(transient.rfind("false\ttrue\ttrue\t", 0), 0u) << transient;
    EXPECT_NE(transient.find("{\"x-max-length\",10000}"), std::string::npos) << transient;
    EXPECT_NE(transient.find("{\"x-overflow\",\"drop-head\"}"), std::string::npos) << transient;
    EXPECT_EQ(rows["chat-app-message"], "true\tfalse\tfalse\t[]");
  }

  // The bindings, by what they route.
  for (const char* q : {"chat-app-message", "queue_center", "queue_balance", "queue_comm_gb"})
    raw.purge(q);
  ASSERT_TRUE(raw.publish("conversation.outgoing", "anything", "{\"cmd\":\"msg\"}"));
  ASSERT_TRUE(raw.publish("exchange_base", "center", "{\"to\":\"center from base\"}"));
  ASSERT_TRUE(raw.publish("exchange_comm_gb", "center", "{\"to\":\"center from gb\"}"));
  ASSERT_TRUE(raw.publish("exchange_base", "balance", "{\"to\":\"balance\"}"));
  ASSERT_TRUE(raw.publish("exchange_comm_gb", "comm_gb", "{\"to\":\"comm_gb\"}"));
  ASSERT_TRUE(raw.publish("exchange_base", "comm_gb", "{\"not\":\"routed\"}"));
  auto count = [&](const char* q) { return raw.queue_declare(q, true).messages; };
  EXPECT_TRUE(eventually([&] { return count("chat-app-message") == 1; }));
  EXPECT_TRUE(eventually([&] { return count("queue_center") == 2; }));
  EXPECT_TRUE(eventually([&] { return count("queue_balance") == 1; }));
  EXPECT_TRUE(eventually([&] { return count("queue_comm_gb") == 1; }));
  for (const char* q : {"chat-app-message", "queue_center", "queue_balance", "queue_comm_gb"})
    raw.purge(q);

  // A conversation's exchange appears with the first binding: fanout, durable. (An id of this
  // run: on a broker of CONVERGE_TEST_AMQP_URL, earlier runs left theirs.)
  const ConversationId conv = 700000000 + ::getpid();
  const std::string exchange = "exchange_c_" + std::to_string(conv);
  EXPECT_EQ(raw.exchange_declare(exchange, "fanout", true), 404);
  a->bus->bind_conversation(conv, true);
  a->bus->bind_conversation(conv, true);  // idempotent
  bound(*a->bus);
  EXPECT_EQ(raw.exchange_declare(exchange, "fanout", true), 200);
  EXPECT_EQ(raw.exchange_declare(exchange, "fanout", false), 200);
  EXPECT_TRUE(a->bus->connected());
  EXPECT_EQ(a->bus->engine_name(), "rabbitmq");
  EXPECT_EQ(a->bus->node_id(), a->id);
  EXPECT_EQ(a->metrics.bus_connected.value(), 1);
}

// ---- stored messages ----

TEST_F(RabbitMqBusTest, MessagesReachBoundNodesOnlyAndNeverTheirOrigin) {
  auto a = start_node("a");
  auto b = start_node("b");
  ASSERT_TRUE(a && b);
  a->bus->bind_conversation(7, true);
  b->bus->bind_conversation(7, true);
  b->bus->bind_conversation(9, true);
  bound(*a->bus);
  bound(*b->bus);

  // A's own devices have them at once, before the broker saw anything.
  a->bus->publish({delivery(7, 1, "one", 3), delivery(7, 2, "two", 3)});
  EXPECT_EQ(a->rec.with([&] { return a->rec.local_.size(); }), 2u);

  ASSERT_TRUE(b->rec.wait([&] { return b->rec.remote_.size() >= 2; }));
  b->rec.with([&] {
    for (int i = 0; i < 2; ++i) {
      const auto& m = b->rec.remote_[i];
      EXPECT_EQ(m.origin, a->id);
      EXPECT_EQ(m.conversation_id, 7);
      EXPECT_EQ(m.seq, i + 1);
      EXPECT_EQ(m.members_version, 3);
      ASSERT_TRUE(m.frame);
      EXPECT_EQ(*m.frame, *test_frame(*delivery(7, i + 1, i == 0 ? "one" : "two")));
    }
  });
  EXPECT_TRUE(b->rec.with([&] { return b->rec.local_.empty(); }));

  // B no longer bound to 7: A's next 7 passes it by; the 9 after it (same channel, same queue)
  // proves it.
  b->bus->bind_conversation(7, false);
  bound(*b->bus);
  a->bus->publish({delivery(7, 3, "three")});
  a->bus->publish({delivery(9, 1, "nine")});
  ASSERT_TRUE(b->rec.wait([&] { return b->rec.remote_.size() >= 3; }));
  b->rec.with([&] {
    EXPECT_EQ(b->rec.remote_.size(), 3u);
    EXPECT_EQ(b->rec.remote_[2].conversation_id, 9);
    EXPECT_EQ(b->rec.remote_[2].seq, 1);
  });

  // A's queue had A's own three 7s before B's 7/10 (B published it after receiving them, and
  // A's queue got each at the same routing step): A sees only B's.
  b->bus->publish({delivery(7, 10, "from b")});
  ASSERT_TRUE(a->rec.wait([&] { return !a->rec.remote_.empty(); }));
  a->rec.with([&] {
    ASSERT_EQ(a->rec.remote_.size(), 1u);
    EXPECT_EQ(a->rec.remote_[0].origin, b->id);
    EXPECT_EQ(a->rec.remote_[0].seq, 10);
  });
  EXPECT_GE(a->metrics.bus_published_total.value(), 4u);
  EXPECT_GE(b->metrics.bus_received_total.value(), 3u);
  EXPECT_EQ(a->metrics.bus_dropped_total.value(), 0u);
}

TEST_F(RabbitMqBusTest, ABatchArrivesInSeqOrder) {
  auto a = start_node("a");
  auto b = start_node("b");
  ASSERT_TRUE(a && b);
  b->bus->bind_conversation(11, true);
  bound(*b->bus);
  std::vector<std::shared_ptr<const Delivery>> batch;
  for (int i = 1; i <= 1000; ++i) batch.push_back(delivery(11, i, "m" + std::to_string(i)));
  a->bus->publish(std::move(batch));
  ASSERT_TRUE(b->rec.wait([&] { return b->rec.remote_.size() >= 1000; }));
  b->rec.with([&] {
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(b->rec.remote_[i].seq, i + 1);
  });
}

TEST_F(RabbitMqBusTest, StopSendsWhatIsQueuedThenCallsNoListener) {
  auto a = start_node("a");
  auto b = start_node("b");
  ASSERT_TRUE(a && b);
  b->bus->bind_conversation(13, true);
  bound(*b->bus);
  std::vector<std::shared_ptr<const Delivery>> batch;
  for (int i = 1; i <= 200; ++i) batch.push_back(delivery(13, i, "s"));
  a->bus->publish(std::move(batch));
  a->bus->stop();  // at once: the 200 are queued, or on their way
  a->bus->stop();  // idempotent
  EXPECT_FALSE(a->bus->connected());
  ASSERT_TRUE(b->rec.wait([&] { return b->rec.remote_.size() >= 200; }));
  a->bus->publish({delivery(13, 201, "after stop")});
  EXPECT_EQ(a->rec.with([&] { return a->rec.local_.size(); }), 200u);
  EXPECT_EQ(a->metrics.bus_dropped_total.value(), 1u);
}

// ---- notices ----

TEST_F(RabbitMqBusTest, NoticesAreRoutedByKind) {
  auto a = start_node("a");
  auto b = start_node("b");
  ASSERT_TRUE(a && b);
  a->bus->bind_user("u1", true);
  bound(*a->bus);

  using K = Notice::Kind;
  b->bus->publish(notice(K::event, "u1", "e1"));
  EXPECT_EQ(b->rec.with([&] { return b->rec.notices_.size(); }), 1u);  // local, at once
  ASSERT_TRUE(a->rec.wait([&] { return a->rec.notices_.size() >= 1; }));
  // An event for a user with no device on A passes A by; the broadcast after it reaches A.
  b->bus->publish(notice(K::event, "u2", "e2"));
  b->bus->publish(notice(K::broadcast, "", "b1"));
  b->bus->publish(notice(K::conversation, "", "c1"));
  b->bus->publish(notice(K::revoke, "u9", "r1"));
  ASSERT_TRUE(a->rec.wait([&] { return a->rec.notices_.size() >= 4; }));
  a->rec.with([&] {
    EXPECT_EQ(a->rec.notices_, (std::vector<std::string>{"e1", "b1", "c1", "r1"}));
    EXPECT_EQ(a->rec.notice_kinds_,
              (std::vector<K>{K::event, K::broadcast, K::conversation, K::revoke}));
  });

  // B's own broadcast, conversation and revoke notices were routed to B's queue too, before A's
  // broadcast below: B sees them once (locally), then A's.
  a->bus->publish(notice(K::broadcast, "", "b2"));
  ASSERT_TRUE(b->rec.wait([&] { return b->rec.notices_.size() >= 6; }));
  b->rec.with([&] {
    EXPECT_EQ(b->rec.notices_, (std::vector<std::string>{"e1", "e2", "b1", "c1", "r1", "b2"}));
  });

  // Unbound: u1's events no longer come.
  a->bus->bind_user("u1", false);
  bound(*a->bus);
  b->bus->publish(notice(K::event, "u1", "e3"));
  b->bus->publish(notice(K::broadcast, "", "b3"));
  ASSERT_TRUE(a->rec.wait([&] { return a->rec.notices_.size() >= 6; }));
  EXPECT_EQ(a->rec.with([&] { return a->rec.notices_.back(); }), "b3");
  EXPECT_EQ(a->rec.with([&] { return a->rec.notices_.size(); }), 6u);  // b2 (own) and b3
}

TEST_F(RabbitMqBusTest, AdminNoticesReachOnlyNodesWithThatAdmin) {
  auto a = start_node("a");
  auto b = start_node("b");
  ASSERT_TRUE(a && b);
  // u1 has a device on A as a user and as an admin; u2 only as a user.
  a->bus->bind_user("u1", true);
  a->bus->bind_admin("u1", true);
  a->bus->bind_user("u2", true);
  bound(*a->bus);
  using K = Notice::Kind;
  b->bus->publish(notice(K::admin, "u2", "not-an-admin-here"));
  b->bus->publish(notice(K::admin, "u1", "m1"));
  ASSERT_TRUE(a->rec.wait([&] { return a->rec.notices_.size() >= 1; }));
  // The admin binding goes; the user binding stays: an admin notice no longer comes, events do.
  a->bus->bind_admin("u1", false);
  bound(*a->bus);
  b->bus->publish(notice(K::admin, "u1", "m2"));
  b->bus->publish(notice(K::event, "u1", "e1"));
  ASSERT_TRUE(a->rec.wait([&] { return a->rec.notices_.size() >= 2; }));
  a->rec.with([&] {
    EXPECT_EQ(a->rec.notices_, (std::vector<std::string>{"m1", "e1"}));
    EXPECT_EQ(a->rec.notice_kinds_, (std::vector<K>{K::admin, K::event}));
  });
}

// ---- transient traffic ----

TEST_F(RabbitMqBusTest, TransientReachesOnlyBoundNodesAndNeverLoopsBack) {
  auto a = start_node("a");
  auto b = start_node("b");
  ASSERT_TRUE(a && b);
  a->bus->bind_transient("room.1", true);
  b->bus->bind_transient("room.2", true);
  bound(*a->bus);
  bound(*b->bus);

  b->bus->publish_transient("room.1", std::make_shared<const std::string>("hello"));
  ASSERT_TRUE(a->rec.wait([&] { return !a->rec.transient_.empty(); }));
  a->rec.with([&] {
    EXPECT_EQ(a->rec.transient_[0].key, "room.1");
    EXPECT_EQ(a->rec.transient_[0].origin, b->id);
    EXPECT_EQ(a->rec.transient_[0].payload, "hello");
  });

  // A's room.1 frame: not to B (unbound), not back to A; the room.2 frame after it reaches B.
  a->bus->publish_transient("room.1", std::make_shared<const std::string>("own"));
  a->bus->publish_transient("room.2", std::make_shared<const std::string>("to b"));
  ASSERT_TRUE(b->rec.wait([&] { return !b->rec.transient_.empty(); }));
  b->rec.with([&] {
    ASSERT_EQ(b->rec.transient_.size(), 1u);
    EXPECT_EQ(b->rec.transient_[0].payload, "to b");
  });
  b->bus->publish_transient("room.1", std::make_shared<const std::string>("after"));
  ASSERT_TRUE(a->rec.wait([&] { return a->rec.transient_.size() >= 2; }));
  a->rec.with([&] {
    EXPECT_EQ(a->rec.transient_.size(), 2u);
    EXPECT_EQ(a->rec.transient_[1].payload, "after");
  });
  EXPECT_TRUE(a->rec.with([&] { return a->rec.local_.empty() && a->rec.notices_.empty(); }));

  // Unbound: B's next room.1 frame passes A by, the room.3 after it arrives.
  a->bus->bind_transient("room.1", false);
  a->bus->bind_transient("room.3", true);
  bound(*a->bus);
  b->bus->publish_transient("room.1", std::make_shared<const std::string>("gone"));
  b->bus->publish_transient("room.3", std::make_shared<const std::string>("three"));
  ASSERT_TRUE(a->rec.wait([&] { return a->rec.transient_.size() >= 3; }));
  a->rec.with([&] {
    EXPECT_EQ(a->rec.transient_.size(), 3u);
    EXPECT_EQ(a->rec.transient_[2].payload, "three");
  });
}

// ---- the center input (seed 000's plain AMQP clients) ----

TEST_F(RabbitMqBusTest, CenterRequestsCompeteAndAreAckedOnceAndAnswered) {
  Raw raw(broker_.url);
  ASSERT_TRUE(raw.ok());
  raw.purge("chat-app-message");
  auto a = start_node("a");
  auto b = start_node("b");
  ASSERT_TRUE(a && b);
  bound(*a->bus);  // consuming (set_listener) is in effect
  bound(*b->bus);
  const std::string reply_to = raw.reply_queue();
  ASSERT_FALSE(reply_to.empty());

  constexpr int kRequests = 40;
  for (int i = 0; i < kRequests; ++i)
    ASSERT_TRUE(raw.publish("conversation.outgoing", "", "req" + std::to_string(i), reply_to,
                            "corr" + std::to_string(i)));
  auto total = [&] {
    return a->rec.with([&] { return a->rec.center_.size(); }) +
           b->rec.with([&] { return b->rec.center_.size(); });
  };
  ASSERT_TRUE(eventually([&] { return total() >= kRequests; }));
  std::set<std::string> bodies;
  std::vector<std::pair<Node*, CenterRequest>> all;
  for (Node* n : {a.get(), b.get()})
    n->rec.with([&] {
      for (auto& r : n->rec.center_) {
        bodies.insert(r.body);
        all.push_back({n, r});
      }
    });
  EXPECT_EQ(total(), static_cast<std::size_t>(kRequests));  // none twice
  EXPECT_EQ(bodies.size(), static_cast<std::size_t>(kRequests));
  EXPECT_GT(a->rec.with([&] { return a->rec.center_.size(); }), 0u) << "competing consumers";
  EXPECT_GT(b->rec.with([&] { return b->rec.center_.size(); }), 0u) << "competing consumers";

  // Answered and acked from this thread (not the engine's); one tag acked twice is harmless.
  // B's last request is left unacked: it must come back when B goes.
  std::optional<CenterRequest> held;
  for (auto& [n, r] : all) {
    if (n == b.get() && !held) {
      held = r;
      continue;
    }
    EXPECT_EQ(r.reply_to, reply_to);
    n->bus->reply(r.reply_to, r.correlation_id, "re:" + r.body);
    n->bus->center_done(r.tag);
  }
  a->bus->center_done(all.front().second.tag);
  std::set<std::string> answered;
  for (int i = 0; i < kRequests - 1; ++i) {
    auto got = raw.next();
    ASSERT_TRUE(got) << "reply " << i;
    EXPECT_EQ(got->body, "re:req" + got->correlation_id.substr(4));
    answered.insert(got->correlation_id);
  }
  EXPECT_EQ(answered.size(), static_cast<std::size_t>(kRequests - 1));
  bound(*a->bus);  // the acks are sent
  bound(*b->bus);
  EXPECT_TRUE(a->bus->connected() && b->bus->connected());

  // B goes with one request unacked: the broker hands it to A, marked redelivered.
  const auto a_before = a->rec.with([&] { return a->rec.center_.size(); });
  b.reset();
  ASSERT_TRUE(a->rec.wait([&] { return a->rec.center_.size() > a_before; }));
  const auto again = a->rec.with([&] { return a->rec.center_.back(); });
  EXPECT_EQ(again.body, held->body);
  a->bus->center_done(again.tag);
  bound(*a->bus);
  a.reset();
  // Every request was acked: nothing is left, none came back.
  EXPECT_EQ(raw.queue_declare("chat-app-message", true).messages, 0u);
}

// ---- backend notifications ----

TEST_F(RabbitMqBusTest, BackendNotificationsAreConfirmedAndPersistent) {
  Raw raw(broker_.url);
  ASSERT_TRUE(raw.ok());
  raw.purge("queue_balance");
  raw.purge("queue_comm_gb");
  auto a = start_node("a");
  ASSERT_TRUE(a);
  auto st = a->bus->publish_backend(BackendExchange::base, "balance", "{\"cmd\":\"lb\"}");
  ASSERT_TRUE(st) << st.error().message;
  auto got = raw.get("queue_balance");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->body, "{\"cmd\":\"lb\"}");
  EXPECT_EQ(got->delivery_mode, 2);
  EXPECT_EQ(got->text_headers["x-converge-node"], a->id);
  EXPECT_EQ(got->text_headers["x-converge-kind"], "backend");

  st = a->bus->publish_backend(BackendExchange::comm_gb, "comm_gb", "{\"cmd\":\"gb\"}");
  ASSERT_TRUE(st) << st.error().message;
  got = raw.get("queue_comm_gb");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->body, "{\"cmd\":\"gb\"}");

  st = a->bus->publish_backend(BackendExchange::base, "", "{}");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, Errc::bad_request);
}

// ---- limits ----

TEST_F(RabbitMqBusTest, WhatDoesNotFitThePublisherQueueIsDroppedAndCounted) {
  auto a = start_node("a", [](RabbitMqOptions& o) {
    o.publish_queue_max = 3;
    o.transient_queue_max = 0;
  });
  ASSERT_TRUE(a);
  std::vector<std::shared_ptr<const Delivery>> batch;
  for (int i = 1; i <= 5; ++i) batch.push_back(delivery(12, i, "x"));
  a->bus->publish(std::move(batch));
  EXPECT_EQ(a->rec.with([&] { return a->rec.local_.size(); }), 5u);  // local devices still
  EXPECT_EQ(a->metrics.bus_dropped_total.value(), 5u);
  a->bus->publish_transient("room.9", std::make_shared<const std::string>("voice"));
  EXPECT_EQ(a->metrics.bus_dropped_total.value(), 6u);
}

TEST_F(RabbitMqBusTest, RefusesUnusableOptions) {
  auto o = options_for(broker_.url, "ok-node", nullptr);
  o.url = "http://127.0.0.1:1/";
  auto r = make_rabbitmq_bus(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::bad_request);

  o = options_for(broker_.url, "bad node/id", nullptr);
  r = make_rabbitmq_bus(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::bad_request);

  o = options_for(broker_.url, "ok-node", nullptr);
  o.decode_notice = nullptr;
  r = make_rabbitmq_bus(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::bad_request);

  // Nothing listens there: unavailable once the start timeout is over.
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    const int port = ntohs(a.sin_port);
    ::close(fd);
    o = options_for("amqp://guest:guest@127.0.0.1:" + std::to_string(port), node_name("nl"),
                    nullptr);
    o.start_timeout_ms = 300;
    r = make_rabbitmq_bus(o);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::unavailable);
    EXPECT_NE(r.error().message.find("cannot connect"), std::string::npos) << r.error().message;
  }

  // Wrong password: refused by the broker, said at once (no use retrying).
  o = options_for("amqp://guest:wrong@127.0.0.1:" + std::to_string(broker_.amqp_port) + "/",
                  node_name("pw"), nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  r = make_rabbitmq_bus(o);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::unavailable);
  EXPECT_NE(r.error().message.find("login"), std::string::npos) << r.error().message;
}

// ---- losing the broker ----

TEST_F(RabbitMqBusTest, ACutConnectionIsRestoredWithEveryBinding) {
  auto a = start_node("a");
  auto b = start_node("b");
  ASSERT_TRUE(a && b);
  a->bus->bind_conversation(21, true);
  a->bus->bind_user("u21", true);
  a->bus->bind_transient("room.21", true);
  bound(*a->bus);
  bound(*b->bus);

  EXPECT_EQ(cut_broker_sockets(broker_.amqp_port), 4);  // A's and B's two connections
  ASSERT_TRUE(a->rec.wait([&] { return a->rec.restored_ >= 1; }));
  ASSERT_TRUE(b->rec.wait([&] { return b->rec.restored_ >= 1; }));
  ASSERT_TRUE(eventually([&] { return a->bus->connected() && b->bus->connected(); }));
  EXPECT_GE(a->metrics.bus_reconnects_total.value(), 2u);
  EXPECT_EQ(a->metrics.bus_connected.value(), 1);

  // Everything A had bound works again.
  b->bus->publish({delivery(21, 1, "after the cut")});
  b->bus->publish(notice(Notice::Kind::event, "u21", "ev21"));
  b->bus->publish_transient("room.21", std::make_shared<const std::string>("voice21"));
  ASSERT_TRUE(a->rec.wait([&] {
    return !a->rec.remote_.empty() && !a->rec.notices_.empty() && !a->rec.transient_.empty();
  }));
  a->rec.with([&] {
    EXPECT_EQ(a->rec.remote_[0].seq, 1);
    EXPECT_EQ(a->rec.notices_[0], "ev21");
    EXPECT_EQ(a->rec.transient_[0].payload, "voice21");
    EXPECT_EQ(a->rec.restored_, 1);  // once
  });
}

TEST_F(RabbitMqBusTest, ABrokerRestartIsSurvived) {
  if (!broker_.owned) GTEST_SKIP() << "restarts only a private broker (CONVERGE_TEST_AMQP_URL)";
  auto a = start_node("a");
  auto b = start_node("b");
  ASSERT_TRUE(a && b);
  a->bus->bind_conversation(31, true);
  bound(*a->bus);

  auto st = amqptest::rabbitmqctl({"stop_app"});
  ASSERT_TRUE(st) << st.error().message;
  ASSERT_TRUE(eventually([&] { return !a->bus->connected() && !b->bus->connected(); }));
  EXPECT_EQ(a->metrics.bus_connected.value(), 0);

  // While the broker is away: local devices are served, the rest is dropped and counted, and a
  // backend notification says it was not sent.
  const auto dropped = b->metrics.bus_dropped_total.value();
  b->bus->publish({delivery(31, 1, "during")});
  b->bus->publish_transient("room.31", std::make_shared<const std::string>("v"));
  EXPECT_EQ(b->rec.with([&] { return b->rec.local_.size(); }), 1u);
  EXPECT_EQ(b->metrics.bus_dropped_total.value(), dropped + 2);
  auto backend = b->bus->publish_backend(BackendExchange::base, "balance", "{}");
  ASSERT_FALSE(backend);
  EXPECT_EQ(backend.error().code, Errc::unavailable);

  st = amqptest::rabbitmqctl({"start_app"});
  ASSERT_TRUE(st) << st.error().message;
  ASSERT_TRUE(a->rec.wait([&] { return a->rec.restored_ >= 1; }));
  ASSERT_TRUE(eventually([&] { return a->bus->connected() && b->bus->connected(); }));
  b->bus->publish({delivery(31, 2, "after")});
  ASSERT_TRUE(a->rec.wait([&] { return !a->rec.remote_.empty(); }));
  EXPECT_EQ(a->rec.with([&] { return a->rec.remote_[0].seq; }), 2);
}

}  // namespace
