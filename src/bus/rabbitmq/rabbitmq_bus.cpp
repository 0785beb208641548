#include "bus/rabbitmq/rabbitmq_bus.hpp"

// Seed 000's topology, declared (idempotently) by both connections at every (re)connect:
//
//   conversation.outgoing  fanout  durable --""--------> chat-app-message (durable; the center
//                                                        input: nodes compete for it, manual ack)
//   conversation.incoming  topic   durable --c_<id>----> exchange_c_<id> (fanout, durable; one per
//                                                        conversation, declared by the first node
//                                                        that binds it) --> member queues
//   exchange_base          topic   durable --center----> queue_center (durable)
//                                          --balance---> queue_balance (durable)
//   exchange_comm_gb       topic   durable --center----> queue_center
//                                          --comm_gb---> queue_comm_gb (durable)
//   converge.transient     topic   durable (its messages are not persistent)
//
// and this node's two queues, exclusive to the consumer's connection (gone with it):
//
//   converge.node.<id>             exchange_base "node.notice", "broadcast", "u_.<uid>" per bound
//                                  user; exchange_c_<id> "" per bound conversation
//   converge.node.<id>.transient   converge.transient <key> per bound key; at most 10000 waiting,
//                                  the oldest dropped first (voice prefers fresh frames)
//
// Headers on everything a node publishes: x-converge-node (the origin, by which a node drops its
// own) and x-converge-kind (msg | notice | transient | backend | reply); stored messages add
// x-conversation, x-seq and x-members-version (int64), so the receiving node routes and orders them
// without parsing the body, which is the seed-000 envelope a plain AMQP client reads.

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "base/metrics.hpp"
#include "base/process.hpp"

namespace converge {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kOutgoing = "conversation.outgoing";
constexpr const char* kIncoming = "conversation.incoming";
constexpr const char* kCenterInput = "chat-app-message";
constexpr const char* kBase = "exchange_base";
constexpr const char* kCommGb = "exchange_comm_gb";
constexpr const char* kQueueCenter = "queue_center";
constexpr const char* kQueueBalance = "queue_balance";
constexpr const char* kQueueCommGb = "queue_comm_gb";
constexpr const char* kTransientExchange = "converge.transient";
constexpr const char* kNodeNoticeKey = "node.notice";
// Node heartbeats travel on the transient path, not behind the node queue's backlog: a node
// busy catching up with a flood of messages must not take the others for dead.
constexpr std::string_view kHeartbeatKey = "node.heartbeat";
constexpr const char* kBroadcastKey = "broadcast";

// Consumer tags: which of the four consumers on the consumer's channel a delivery is for.
constexpr std::string_view kTagNode = "node";
constexpr std::string_view kTagTransient = "transient";
constexpr std::string_view kTagCenter = "center";
constexpr std::string_view kTagCenterLog = "center-log";

constexpr amqp_channel_t kChannel = 1;  // each connection uses one channel
constexpr int kHeartbeatS = 10;         // AMQP heartbeat: a dead peer is noticed in 2-3 of these
constexpr int kFrameMax = 131072;
constexpr int kConnectTimeoutS = 5;           // TCP connect, AMQP handshake, and every RPC
constexpr int kPollMs = 1000;                 // idle wake-up: heartbeats are sent from the loops
constexpr int kTransientQueueLength = 10000;  // x-max-length of the node's transient queue
constexpr std::size_t kRemoteBatchMax = 256;  // RemoteMessages per on_remote_messages call
constexpr std::size_t kDrainMax = 1024;       // deliveries read before bindings and acks get a turn
constexpr std::size_t kConfirmReadEvery = 256;  // publishes between reads of the confirms
constexpr std::size_t kRoutingKeyMax = 255;     // AMQP shortstr
constexpr auto kBackoffMin = 100ms;
constexpr auto kBackoffMax = 5000ms;
// The tag handed out with a CenterRequest: the connection's generation above the broker's
// delivery tag, so that a center_done for a delivery of a connection since lost acks nothing.
constexpr int kTagGenerationShift = 48;
constexpr uint64_t kDeliveryTagMask = (uint64_t{1} << kTagGenerationShift) - 1;

amqp_bytes_t bytes(std::string_view s) {
  amqp_bytes_t b;
  b.len = s.size();
  b.bytes = const_cast<char*>(s.data());
  return b;
}
std::string_view view(amqp_bytes_t b) {
  return {static_cast<const char*>(b.bytes), b.len};
}

std::string describe(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "ok";
    case AMQP_RESPONSE_NONE:
      return "no RPC reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return amqp_error_string2(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto* m = static_cast<amqp_connection_close_t*>(r.reply.decoded);
        return fmt::format("connection closed by the broker: {} {}", m->reply_code,
                           view(m->reply_text));
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        auto* m = static_cast<amqp_channel_close_t*>(r.reply.decoded);
        return fmt::format("channel closed by the broker: {} {}", m->reply_code,
                           view(m->reply_text));
      }
      return fmt::format("unexpected method {:#x} from the broker", r.reply.id);
  }
  return "unknown RPC reply";
}

Status check(amqp_connection_state_t c, std::string_view what) {
  auto r = amqp_get_rpc_reply(c);
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return ok_status();
  return make_error(Errc::unavailable, fmt::format("{}: {}", what, describe(r)));
}

// An AMQP table whose entries point into strings that outlive it (headers, arguments).
class Table {
 public:
  Table& text(const char* key, std::string_view v) {
    auto& e = entries_.emplace_back();
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_UTF8;
    e.value.value.bytes = bytes(v);
    return *this;
  }
  Table& i64(const char* key, int64_t v) {
    auto& e = entries_.emplace_back();
    e.key = amqp_cstring_bytes(key);
    e.value.kind = AMQP_FIELD_KIND_I64;
    e.value.value.i64 = v;
    return *this;
  }
  amqp_table_t get() {
    amqp_table_t t;
    t.num_entries = static_cast<int>(entries_.size());
    t.entries = entries_.data();
    return t;
  }

 private:
  std::vector<amqp_table_entry_t> entries_;
};

const amqp_field_value_t* header(const amqp_basic_properties_t& p, std::string_view key) {
  if (!(p._flags & AMQP_BASIC_HEADERS_FLAG)) return nullptr;
  for (int i = 0; i < p.headers.num_entries; ++i)
    if (view(p.headers.entries[i].key) == key) return &p.headers.entries[i].value;
  return nullptr;
}

std::string header_text(const amqp_basic_properties_t& p, std::string_view key) {
  auto* v = header(p, key);
  if (!v || (v->kind != AMQP_FIELD_KIND_UTF8 && v->kind != AMQP_FIELD_KIND_BYTES)) return {};
  return std::string(view(v->value.bytes));
}

// Any integer kind (other clients encode numbers as they like), or a decimal string.
std::optional<int64_t> header_int(const amqp_basic_properties_t& p, std::string_view key) {
  auto* v = header(p, key);
  if (!v) return std::nullopt;
  switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
      return v->value.i8;
    case AMQP_FIELD_KIND_U8:
      return v->value.u8;
    case AMQP_FIELD_KIND_I16:
      return v->value.i16;
    case AMQP_FIELD_KIND_U16:
      return v->value.u16;
    case AMQP_FIELD_KIND_I32:
      return v->value.i32;
    case AMQP_FIELD_KIND_U32:
      return v->value.u32;
    case AMQP_FIELD_KIND_I64:
      return v->value.i64;
    case AMQP_FIELD_KIND_U64:
      return static_cast<int64_t>(v->value.u64);
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES: {
      auto s = view(v->value.bytes);
      int64_t n = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
      return n;
    }
    default:
      return std::nullopt;
  }
}

std::string_view cut(std::string_view s, std::size_t max) {
  return s.size() > max ? s.substr(0, max) : s;
}

struct BrokerAddress {
  std::string host;
  int port = 5672;
  std::string user;
  std::string password;
  std::string vhost;
  std::string display;  // host:port/vhost, for messages (never the password)
};

Result<BrokerAddress> parse_url(const std::string& url) {
  std::string buf = url;  // amqp_parse_url cuts it in place
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (url.rfind("amqp://", 0) != 0 && url.rfind("amqps://", 0) != 0)
    return make_error(Errc::bad_request, "bus URL: expected amqp://user:password@host:port/vhost");
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK)
    return make_error(Errc::bad_request,
                      "bus URL: cannot parse it as amqp://user:password@host:port/vhost");
  if (info.ssl)
    return make_error(Errc::bad_request, "bus URL: amqps:// (TLS) is not supported yet");
  BrokerAddress a;
  a.host = info.host;
  a.port = info.port;
  a.user = info.user;
  a.password = info.password;
  // The AMQP URI spec reads "amqp://host/" as the vhost "", which no broker has: "/" is meant.
  a.vhost = *info.vhost ? info.vhost : "/";
  a.display = fmt::format("{}:{}/{}", a.host, a.port, a.vhost == "/" ? "" : a.vhost);
  return a;
}

bool valid_node_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '@' || c == '-';
  });
}

// One AMQP connection with channel 1 open. Each engine thread owns one; rabbitmq-c's connection
// state is not thread-safe, and nothing but the owner touches it.
class Connection {
 public:
  Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { close(); }

  Status open(const BrokerAddress& a, const std::string& name) {
    c_ = amqp_new_connection();
    if (!c_) return make_error(Errc::internal, "amqp_new_connection: out of memory");
    amqp_socket_t* sock = amqp_tcp_socket_new(c_);
    if (!sock) return make_error(Errc::internal, "amqp_tcp_socket_new: out of memory");
    timeval tv{kConnectTimeoutS, 0};
    if (int rc = amqp_socket_open_noblock(sock, a.host.c_str(), a.port, &tv); rc != AMQP_STATUS_OK)
      return make_error(Errc::unavailable,
                        fmt::format("cannot connect to {}: {}", a.display, amqp_error_string2(rc)));
    amqp_set_handshake_timeout(c_, &tv);
    amqp_set_rpc_timeout(c_, &tv);
    Table props;
    props.text("connection_name", name).text("product", "converge");
    auto t = props.get();
    auto r = amqp_login_with_properties(c_, a.vhost.c_str(), 0, kFrameMax, kHeartbeatS, &t,
                                        AMQP_SASL_METHOD_PLAIN, a.user.c_str(), a.password.c_str());
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      // Refused credentials (403) or an unknown vhost (530) will not heal by retrying soon.
      bool refused = false;
      if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
          r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        auto code = static_cast<amqp_connection_close_t*>(r.reply.decoded)->reply_code;
        refused = code == AMQP_ACCESS_REFUSED || code == AMQP_NOT_ALLOWED;
      }
      return make_error(refused ? Errc::forbidden : Errc::unavailable,
                        fmt::format("login to {} as {}: {}", a.display, a.user, describe(r)));
    }
    usable_ = true;
    amqp_channel_open(c_, kChannel);
    return check(c_, "channel.open");
  }

  amqp_connection_state_t get() const { return c_; }
  int fd() const { return c_ ? amqp_get_sockfd(c_) : -1; }

  // After an error the state is unusable: close the socket without talking to the broker.
  void abandon() { usable_ = false; }

  void close() {
    if (!c_) return;
    if (usable_) {
      timeval one{1, 0};
      amqp_set_rpc_timeout(c_, &one);
      amqp_channel_close(c_, kChannel, AMQP_REPLY_SUCCESS);
      amqp_connection_close(c_, AMQP_REPLY_SUCCESS);
    }
    amqp_destroy_connection(c_);
    c_ = nullptr;
    usable_ = false;
  }

 private:
  amqp_connection_state_t c_ = nullptr;
  bool usable_ = false;  // logged in: a graceful close is worth trying
};

Status declare_exchange(amqp_connection_state_t c, std::string_view name, const char* type) {
  amqp_exchange_declare(c, kChannel, bytes(name), amqp_cstring_bytes(type), 0, 1, 0, 0,
                        amqp_empty_table);
  return check(c, fmt::format("declare exchange {}", name));
}

Status declare_durable_queue(amqp_connection_state_t c, std::string_view name) {
  amqp_queue_declare(c, kChannel, bytes(name), 0, 1, 0, 0, amqp_empty_table);
  return check(c, fmt::format("declare queue {}", name));
}

// Exclusive to the declaring connection and deleted with it: a node's queues die with the node.
Status declare_node_queue(amqp_connection_state_t c, std::string_view name, amqp_table_t args) {
  amqp_queue_declare(c, kChannel, bytes(name), 0, 0, 1, 1, args);
  return check(c, fmt::format("declare queue {}", name));
}

Status bind_queue(amqp_connection_state_t c, std::string_view queue, std::string_view exchange,
                  std::string_view key) {
  amqp_queue_bind(c, kChannel, bytes(queue), bytes(exchange), bytes(key), amqp_empty_table);
  return check(c, fmt::format("bind {} to {} by '{}'", queue, exchange, key));
}

Status unbind_queue(amqp_connection_state_t c, std::string_view queue, std::string_view exchange,
                    std::string_view key) {
  amqp_queue_unbind(c, kChannel, bytes(queue), bytes(exchange), bytes(key), amqp_empty_table);
  return check(c, fmt::format("unbind {} from {} by '{}'", queue, exchange, key));
}

Status declare_topology(amqp_connection_state_t c) {
  struct Step {
    const char* what;  // "x" exchange (with type), "q" durable queue, "b" queue binding
    const char* a;
    const char* b;
    const char* key;
  };
  static constexpr Step steps[] = {
      {"x", kOutgoing, "fanout", nullptr},     {"q", kCenterInput, nullptr, nullptr},
      {"b", kCenterInput, kOutgoing, ""},      {"x", kIncoming, "topic", nullptr},
      {"x", kBase, "topic", nullptr},          {"q", kQueueCenter, nullptr, nullptr},
      {"b", kQueueCenter, kBase, "center"},    {"q", kQueueBalance, nullptr, nullptr},
      {"b", kQueueBalance, kBase, "balance"},  {"x", kCommGb, "topic", nullptr},
      {"b", kQueueCenter, kCommGb, "center"},  {"q", kQueueCommGb, nullptr, nullptr},
      {"b", kQueueCommGb, kCommGb, "comm_gb"}, {"x", kTransientExchange, "topic", nullptr},
  };
  for (const auto& s : steps) {
    Status st = ok_status();
    switch (s.what[0]) {
      case 'x':
        st = declare_exchange(c, s.a, s.b);
        break;
      case 'q':
        st = declare_durable_queue(c, s.a);
        break;
      default:
        st = bind_queue(c, s.a, s.b, s.key);
        break;
    }
    if (!st) return st;
  }
  return ok_status();
}

std::string conversation_exchange(ConversationId id) {
  return "exchange_c_" + std::to_string(id);
}
std::string conversation_key(ConversationId id) {
  return "c_" + std::to_string(id);
}
std::string user_key(std::string_view user_id) {
  return "u_." + std::string(user_id);
}
std::string admin_key(std::string_view user_id) {
  return "m_." + std::string(user_id);
}

// Wakes a thread out of poll(): an eventfd, written when its queue turns non-empty.
class Wakeup {
 public:
  Wakeup() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;
  ~Wakeup() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  void notify() {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
  }
  void drain() {
    uint64_t v;
    [[maybe_unused]] auto n = ::read(fd_, &v, sizeof v);
  }

 private:
  int fd_;
};

// What poll() saw: the socket readable (or closed), the wake-up fd, neither (timeout).
struct PollResult {
  bool socket = false;
  bool woken = false;
};

PollResult wait_for(int sock_fd, Wakeup& wake, int timeout_ms) {
  pollfd fds[2] = {{sock_fd, POLLIN, 0}, {wake.fd(), POLLIN, 0}};
  PollResult r;
  int n = ::poll(sock_fd >= 0 ? fds : fds + 1, sock_fd >= 0 ? 2 : 1, timeout_ms);
  if (n <= 0) return r;  // timeout or EINTR: the caller loops
  if (sock_fd >= 0) r.socket = fds[0].revents != 0;
  r.woken = fds[1].revents != 0;
  if (r.woken) wake.drain();
  return r;
}

// A publish_backend caller waiting for the broker's confirm.
struct Confirm {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Status> result;

  void resolve(Status s) {
    {
      std::lock_guard lk(mu);
      if (result) return;
      result = std::move(s);
    }
    cv.notify_all();
  }
};

// Anything but a stored message or a notice: transient frames, backend notifications, replies.
struct RawPublish {
  std::string exchange;
  std::string routing_key;
  std::shared_ptr<const std::string> body;
  const char* kind = "";  // x-converge-kind
  bool persistent = false;
  bool transient = false;  // counted against transient_queue_max
  std::string correlation_id;
  std::shared_ptr<Confirm> confirm;  // publish_backend: resolved by the broker's (n)ack
};

using DeliveryBatch = std::vector<std::shared_ptr<const Delivery>>;
using PublishJob = std::variant<DeliveryBatch, std::shared_ptr<const Notice>, RawPublish>;

std::size_t job_items(const PublishJob& j) {
  if (auto* b = std::get_if<DeliveryBatch>(&j)) return b->size();
  return 1;
}

// A request for the consumer thread, which owns the node's queues and bindings.
struct ConsumerOp {
  enum class What { conversation, user, transient, ack, consume, barrier, declare };
  What what = What::barrier;
  bool on = false;
  ConversationId conversation = 0;
  std::string key;  // user id or transient key
  uint64_t tag = 0;
  std::function<void()> done;
};

class RabbitMqBus final : public Bus {
 public:
  RabbitMqBus(RabbitMqOptions o, BrokerAddress a)
      : opts_(std::move(o)),
        addr_(std::move(a)),
        node_queue_("converge.node." + opts_.node_id),
        transient_queue_(node_queue_ + ".transient") {}

  ~RabbitMqBus() override { stop(); }

  Status start() {
    publisher_ = std::thread([this] { publisher_main(); });
    consumer_ = std::thread([this] { consumer_main(); });
    std::unique_lock lk(state_mu_);
    if (state_cv_.wait_for(lk, std::chrono::milliseconds(opts_.start_timeout_ms),
                           [&] { return connected() || refused_; }) &&
        !refused_)
      return ok_status();
    return make_error(
        Errc::unavailable,
        fmt::format("message broker {} not reached within {} ms: {}", addr_.display,
                    opts_.start_timeout_ms, last_error_.empty() ? "no answer" : last_error_));
  }

  // Idempotent; the destructor calls it too. No listener call after it returns (the threads are
  // joined, and publish() serves local devices no more either).
  void stop() override {
    std::lock_guard stop_lk(stop_mu_);
    stopping_.store(true);
    pub_wake_.notify();
    con_wake_.notify();
    // A publish blocked in send() (a broker that stopped reading: a memory alarm) would never
    // see the flag: after a grace period, cut its socket from under it.
    for (int i = 0; i < 300 && publisher_.joinable() && !pub_exited_.load(); ++i)
      std::this_thread::sleep_for(10ms);
    if (publisher_.joinable() && !pub_exited_.load())
      if (int fd = pub_fd_.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
    if (publisher_.joinable()) publisher_.join();
    if (consumer_.joinable()) consumer_.join();
  }

  std::string engine_name() const override { return "rabbitmq"; }
  std::string node_id() const override { return opts_.node_id; }
  bool connected() const override { return pub_up_.load() && con_up_.load(); }

  void set_listener(BusListener* l) override {
    listener_.store(l);
    // Consuming starts now: before, a center request or a notice would have nowhere to go.
    ConsumerOp op;
    op.what = ConsumerOp::What::consume;
    post(std::move(op));
  }

  void publish(std::vector<std::shared_ptr<const Delivery>> batch) override {
    if (stopping_.load()) return drop(batch.size());
    if (auto* l = listener_.load()) l->on_deliveries(batch);  // local devices do not wait
    if (!batch.empty()) enqueue(PublishJob(std::move(batch)), false);
  }

  void publish(std::shared_ptr<const Notice> n) override {
    if (!n) return;
    if (stopping_.load()) return drop(1);
    if (auto* l = listener_.load()) l->on_notice(n);
    enqueue(PublishJob(std::move(n)), false);
  }

  void bind_conversation(ConversationId id, bool on) override {
    ConsumerOp op;
    op.what = ConsumerOp::What::conversation;
    op.on = on;
    op.conversation = id;
    post(std::move(op));
  }

  void declare_conversation(ConversationId id) override {
    ConsumerOp op;
    op.what = ConsumerOp::What::declare;
    op.conversation = id;
    post(std::move(op));
  }

  void bind_user(const std::string& user_id, bool on) override {
    if (user_id.empty() || user_key(user_id).size() > kRoutingKeyMax) return;
    ConsumerOp op;
    op.what = ConsumerOp::What::user;
    op.on = on;
    op.key = user_key(user_id);
    post(std::move(op));
  }

  void bind_admin(const std::string& user_id, bool on) override {
    if (user_id.empty() || admin_key(user_id).size() > kRoutingKeyMax) return;
    ConsumerOp op;
    op.what = ConsumerOp::What::user;
    op.on = on;
    op.key = admin_key(user_id);
    post(std::move(op));
  }

  void bind_transient(const std::string& key, bool on) override {
    if (key.empty() || key.size() > kRoutingKeyMax) return;
    ConsumerOp op;
    op.what = ConsumerOp::What::transient;
    op.on = on;
    op.key = key;
    post(std::move(op));
  }

  void when_bound(std::function<void()> done) override {
    ConsumerOp op;
    op.what = ConsumerOp::What::barrier;
    op.done = std::move(done);
    post(std::move(op));
  }

  void publish_transient(const std::string& key,
                         std::shared_ptr<const std::string> payload) override {
    if (key.empty() || key.size() > kRoutingKeyMax || !payload) return drop(1);
    RawPublish r;
    r.exchange = kTransientExchange;
    r.routing_key = key;
    r.body = std::move(payload);
    r.kind = "transient";
    r.transient = true;
    enqueue(PublishJob(std::move(r)), true);
  }

  void center_done(uint64_t tag) override {
    ConsumerOp op;
    op.what = ConsumerOp::What::ack;
    op.tag = tag;
    post(std::move(op));
  }

  void reply(const std::string& reply_to, const std::string& correlation_id,
             std::string body) override {
    if (reply_to.empty() || reply_to.size() > kRoutingKeyMax) return;
    RawPublish r;
    r.routing_key = reply_to;  // the default exchange routes by queue name
    r.body = std::make_shared<const std::string>(std::move(body));
    r.kind = "reply";
    r.correlation_id = correlation_id;
    enqueue(PublishJob(std::move(r)), false);
  }

  Status publish_backend(BackendExchange exchange, const std::string& routing_key,
                         std::string body) override {
    if (routing_key.empty() || routing_key.size() > kRoutingKeyMax)
      return make_error(Errc::bad_request, "routing key: 1-255 bytes");
    if (!pub_up_.load())
      return make_error(Errc::unavailable, "the message broker is unreachable: not published");
    auto confirm = std::make_shared<Confirm>();
    RawPublish r;
    r.exchange = exchange == BackendExchange::base ? kBase : kCommGb;
    r.routing_key = routing_key;
    r.body = std::make_shared<const std::string>(std::move(body));
    r.kind = "backend";
    r.persistent = true;
    r.confirm = confirm;
    if (!enqueue(PublishJob(std::move(r)), false))
      return make_error(Errc::unavailable, "the bus is not keeping up: not published");
    std::unique_lock lk(confirm->mu);
    if (!confirm->cv.wait_for(lk, std::chrono::milliseconds(opts_.confirm_timeout_ms),
                              [&] { return confirm->result.has_value(); }))
      return make_error(Errc::unavailable,
                        fmt::format("the message broker did not confirm it within {} ms",
                                    opts_.confirm_timeout_ms));
    return *confirm->result;
  }

 private:
  // ---- shared ----

  void count(Counter Metrics::*c, uint64_t n = 1) {
    if (opts_.metrics) (opts_.metrics->*c).add(n);
  }
  void drop(std::size_t n) { count(&Metrics::bus_dropped_total, n); }
  // A job not published: stored messages among it are a loss the other nodes must hear of.
  void drop(const PublishJob& j) {
    drop(job_items(j));
    if (std::holds_alternative<DeliveryBatch>(j)) losses_.fetch_add(1);
  }

 public:
  uint64_t publish_losses() const override { return losses_.load(); }

 private:
  // A thread's connection came or went: connected() may have changed.
  void state_changed() {
    if (opts_.metrics) opts_.metrics->bus_connected.set(connected() ? 1 : 0);
    std::lock_guard lk(state_mu_);
    state_cv_.notify_all();
  }

  void note_error(const char* who, const Error& e, bool& outage_logged) {
    {
      std::lock_guard lk(state_mu_);
      last_error_ = e.message;
      if (e.code == Errc::forbidden) refused_ = true;
    }
    state_cv_.notify_all();
    if (!outage_logged) {
      spdlog::warn("bus {}: {} (retrying with backoff)", who, e.message);
      outage_logged = true;
    } else {
      spdlog::debug("bus {}: {}", who, e.message);
    }
  }

  // Sleeps `d` unless stopping or kicked (the other thread got its connection back: a broker
  // that returns is used at once, not after this thread's backoff).
  void backoff_wait(Wakeup& wake, std::atomic<bool>& kick, std::chrono::milliseconds d,
                    const std::function<void()>& meanwhile) {
    const auto until = Clock::now() + d;
    while (!stopping_.load() && !kick.exchange(false)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      if (left.count() <= 0) return;
      wait_for(-1, wake, static_cast<int>(left.count()));
      meanwhile();
    }
  }

  // ---- publishing (any thread) -> publisher thread ----

  bool enqueue(PublishJob job, bool transient) {
    const std::size_t n = job_items(job);
    if (!pub_up_.load()) {
      drop(job);
      fail_confirm(job, "the message broker is unreachable: not published");
      return false;
    }
    bool queued = false;
    bool was_empty = false;
    {
      std::lock_guard lk(pub_mu_);
      if (pub_items_ + n <= opts_.publish_queue_max &&
          (!transient || pub_transient_ < opts_.transient_queue_max)) {
        was_empty = pub_queue_.empty();
        pub_queue_.push_back(std::move(job));
        pub_items_ += n;
        if (transient) ++pub_transient_;
        queued = true;
      }
    }
    if (!queued) {
      drop(job);
      fail_confirm(job, "the bus is not keeping up: not published");
      return false;
    }
    if (was_empty) pub_wake_.notify();
    return true;
  }

  static void fail_confirm(const PublishJob& job, const std::string& why) {
    if (auto* r = std::get_if<RawPublish>(&job); r && r->confirm)
      r->confirm->resolve(make_error(Errc::unavailable, why));
  }

  // Everything still queued, when the connection is gone: dropped and counted.
  void drop_queued(const std::string& why) {
    std::deque<PublishJob> jobs;
    {
      std::lock_guard lk(pub_mu_);
      jobs.swap(pub_queue_);
      pub_items_ = 0;
      pub_transient_ = 0;
    }
    for (auto& j : jobs) {
      drop(j);
      fail_confirm(j, why);
    }
  }

  // ---- publisher thread ----

  struct Waiting {
    std::shared_ptr<Confirm> confirm;
    Clock::time_point deadline;
  };
  using WaitingMap = std::map<uint64_t, Waiting>;  // confirm-mode delivery tag -> backend caller

  void publisher_main() {
    name_this_thread("bus-publish");
    auto backoff = std::chrono::milliseconds(kBackoffMin);
    bool ever_up = false;
    bool outage_logged = false;
    while (!stopping_.load()) {
      Status st = ok_status();
      kick_publisher_.store(false);  // this attempt is the one a kick would ask for
      {
        Connection c;
        st = c.open(addr_, fmt::format("converge {} publisher", opts_.node_id));
        if (st) st = declare_topology(c.get());
        if (st) {
          amqp_confirm_select(c.get(), kChannel);
          st = check(c.get(), "confirm.select");
        }
        if (st) {
          backoff = kBackoffMin;
          if (ever_up) {
            count(&Metrics::bus_reconnects_total);
            spdlog::info("bus publisher: connected to {} again", addr_.display);
          }
          ever_up = true;
          outage_logged = false;
          pub_fd_.store(c.fd());
          pub_up_.store(true);
          kick_consumer_.store(true);
          con_wake_.notify();
          state_changed();
          st = publish_loop(c);
          pub_up_.store(false);
          state_changed();
          pub_fd_.store(-1);
        }
        if (!st) c.abandon();
      }
      drop_queued(st ? "the bus is stopping" : "the message broker connection was lost");
      if (stopping_.load()) break;
      note_error("publisher", st.error(), outage_logged);
      backoff_wait(pub_wake_, kick_publisher_, backoff,
                   [this] { drop_queued("the message broker is unreachable"); });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(kBackoffMax));
    }
    drop_queued("the bus is stopping");
    pub_exited_.store(true);
  }

  Status publish_loop(Connection& c) {
    amqp_connection_state_t s = c.get();
    uint64_t next_tag = 1;  // confirm mode numbers the channel's publishes from 1
    WaitingMap waiting;
    auto last_rx = Clock::now();
    std::deque<PublishJob> jobs;
    auto fail_all = [&](const std::string& why) {
      for (auto& [tag, w] : waiting) w.confirm->resolve(make_error(Errc::unavailable, why));
      waiting.clear();
      for (auto& j : jobs) {
        drop(j);
        fail_confirm(j, why);
      }
      jobs.clear();
      // Publishes written before the connection went may not have reached the broker.
      losses_.fetch_add(1);
    };
    while (!stopping_.load()) {
      {
        std::lock_guard lk(pub_mu_);
        jobs.swap(pub_queue_);
        pub_items_ = 0;
        pub_transient_ = 0;
      }
      if (jobs.empty() && !amqp_data_in_buffer(s) && !amqp_frames_enqueued(s)) {
        int timeout_ms = kPollMs;
        if (!waiting.empty()) {
          auto first = std::min_element(waiting.begin(), waiting.end(), [](auto& a, auto& b) {
                         return a.second.deadline < b.second.deadline;
                       })->second.deadline;
          auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(first - Clock::now());
          timeout_ms = std::clamp(static_cast<int>(ms.count()) + 1, 0, kPollMs);
        }
        auto r = wait_for(c.fd(), pub_wake_, timeout_ms);
        if (r.socket) last_rx = Clock::now();
      }
      std::size_t since_read = 0;
      while (!jobs.empty()) {
        Status st = publish_guarded(s, jobs.front(), next_tag, waiting);
        jobs.pop_front();
        if (!st) {
          fail_all(st.error().message);
          return st;
        }
        if (++since_read >= kConfirmReadEvery) {
          since_read = 0;
          if (st = read_frames(s, waiting, last_rx); !st) {
            fail_all(st.error().message);
            return st;
          }
        }
      }
      if (Status st = read_frames(s, waiting, last_rx); !st) {
        fail_all(st.error().message);
        return st;
      }
      const auto now = Clock::now();
      for (auto it = waiting.begin(); it != waiting.end();) {
        if (it->second.deadline <= now) {
          it->second.confirm->resolve(
              make_error(Errc::unavailable, "the message broker did not confirm it in time"));
          it = waiting.erase(it);
        } else {
          ++it;
        }
      }
      // The broker sends a heartbeat every kHeartbeatS/2 when it has nothing else to say.
      if (now - last_rx > std::chrono::seconds(3 * kHeartbeatS)) {
        fail_all("no heartbeat from the message broker");
        return make_error(Errc::unavailable, "publisher: no heartbeat from the broker");
      }
    }
    // Stopping: what is queued still goes out; the graceful close that follows is ordered
    // behind it at the broker.
    {
      std::lock_guard lk(pub_mu_);
      jobs.swap(pub_queue_);
      pub_items_ = 0;
      pub_transient_ = 0;
    }
    while (!jobs.empty()) {
      if (!publish_guarded(s, jobs.front(), next_tag, waiting)) break;
      jobs.pop_front();
    }
    fail_all("the bus is stopping");
    return ok_status();
  }

  Status publish_one(amqp_connection_state_t s, std::string_view exchange, std::string_view key,
                     std::string_view body, const amqp_basic_properties_t& props,
                     uint64_t& next_tag) {
    int rc =
        amqp_basic_publish(s, kChannel, bytes(exchange), bytes(key), 0, 0, &props, bytes(body));
    if (rc != AMQP_STATUS_OK)
      return make_error(
          Errc::unavailable,
          fmt::format("publish to {}: {}", exchange.empty() ? "the default exchange" : exchange,
                      amqp_error_string2(rc)));
    ++next_tag;
    count(&Metrics::bus_published_total);
    return ok_status();
  }

  static amqp_basic_properties_t properties(Table& headers, bool persistent) {
    amqp_basic_properties_t p{};
    p._flags =
        AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    p.delivery_mode = persistent ? 2 : 1;
    p.headers = headers.get();
    return p;
  }

  // The callbacks (message_frame, encode_notice) are the node's code: an exception from one
  // drops that job, and the thread goes on.
  Status publish_guarded(amqp_connection_state_t s, PublishJob& job, uint64_t& next_tag,
                         WaitingMap& waiting) {
    try {
      return publish_job(s, job, next_tag, waiting);
    } catch (const std::exception& e) {
      spdlog::error("bus publisher: {}: dropped", e.what());
      drop(job);
      fail_confirm(job, "internal error");
      return ok_status();
    }
  }

  Status publish_job(amqp_connection_state_t s, PublishJob& job, uint64_t& next_tag,
                     WaitingMap& waiting) {
    if (auto* batch = std::get_if<DeliveryBatch>(&job)) {
      for (auto& d : *batch) {
        auto body = opts_.message_frame(*d);
        if (!body) {
          drop(1);
          losses_.fetch_add(1);
          continue;
        }
        const auto key = conversation_key(d->msg.conversation_id);
        Table h;
        h.text("x-converge-node", opts_.node_id)
            .text("x-converge-kind", "msg")
            .i64("x-conversation", d->msg.conversation_id)
            .i64("x-seq", d->msg.seq)
            .i64("x-members-version", d->members_version);
        auto p = properties(h, false);
        if (auto st = publish_one(s, kIncoming, key, *body, p, next_tag); !st) return st;
      }
      return ok_status();
    }
    if (auto* n = std::get_if<std::shared_ptr<const Notice>>(&job)) {
      const Notice& notice = **n;
      std::string key;
      switch (notice.kind) {
        case Notice::Kind::event:
          key = user_key(notice.user_id);
          break;
        case Notice::Kind::admin:
          key = admin_key(notice.user_id);
          break;
        case Notice::Kind::broadcast:
          key = kBroadcastKey;
          break;
        case Notice::Kind::conversation:
        case Notice::Kind::revoke:
          key = kNodeNoticeKey;
          break;
        case Notice::Kind::node:
          key = kHeartbeatKey;
          break;
      }
      const std::string body = opts_.encode_notice(notice);
      Table h;
      h.text("x-converge-node", opts_.node_id).text("x-converge-kind", "notice");
      auto p = properties(h, false);
      const char* exchange = notice.kind == Notice::Kind::node ? kTransientExchange : kBase;
      return publish_one(s, exchange, key, body, p, next_tag);
    }
    auto& r = std::get<RawPublish>(job);
    Table h;
    h.text("x-converge-node", opts_.node_id).text("x-converge-kind", r.kind);
    auto p = properties(h, r.persistent);
    if (!r.correlation_id.empty()) {
      p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
      p.correlation_id = bytes(r.correlation_id);
    }
    const uint64_t tag = next_tag;
    if (auto st = publish_one(s, r.exchange, r.routing_key, *r.body, p, next_tag); !st) {
      if (r.confirm) r.confirm->resolve(st);
      return st;
    }
    if (r.confirm)
      waiting[tag] = Waiting{std::move(r.confirm),
                             Clock::now() + std::chrono::milliseconds(opts_.confirm_timeout_ms)};
    return ok_status();
  }

  // The broker's side of the publisher channel: confirms, and a close when something was wrong.
  Status read_frames(amqp_connection_state_t s, WaitingMap& waiting, Clock::time_point& last_rx) {
    for (;;) {
      amqp_maybe_release_buffers(s);  // the last frame's decoded method lived in the pool
      amqp_frame_t f;
      timeval zero{0, 0};
      int rc = amqp_simple_wait_frame_noblock(s, &f, &zero);
      if (rc == AMQP_STATUS_TIMEOUT) return ok_status();
      if (rc != AMQP_STATUS_OK)
        return make_error(Errc::unavailable, fmt::format("publisher connection to {}: {}",
                                                         addr_.display, amqp_error_string2(rc)));
      last_rx = Clock::now();
      if (f.frame_type != AMQP_FRAME_METHOD) continue;  // nothing is mandatory: no basic.return
      switch (f.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
          auto* m = static_cast<amqp_basic_ack_t*>(f.payload.method.decoded);
          settle(waiting, m->delivery_tag, m->multiple, ok_status());
          break;
        }
        case AMQP_BASIC_NACK_METHOD: {
          auto* m = static_cast<amqp_basic_nack_t*>(f.payload.method.decoded);
          settle(waiting, m->delivery_tag, m->multiple,
                 make_error(Errc::unavailable, "the message broker refused it (nack)"));
          break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
          auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
          return make_error(Errc::unavailable,
                            fmt::format("publisher channel closed by the broker: {} {}",
                                        m->reply_code, view(m->reply_text)));
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
          auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
          auto e = make_error(Errc::unavailable,
                              fmt::format("publisher connection closed by the broker: {} {}",
                                          m->reply_code, view(m->reply_text)));
          amqp_connection_close_ok_t ok{};
          amqp_send_method(s, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
          return e;
        }
        default:
          break;
      }
    }
  }

  static void settle(WaitingMap& waiting, uint64_t tag, bool multiple, const Status& result) {
    if (multiple) {
      auto end = waiting.upper_bound(tag);
      for (auto it = waiting.begin(); it != end; ++it) it->second.confirm->resolve(result);
      waiting.erase(waiting.begin(), end);
    } else if (auto it = waiting.find(tag); it != waiting.end()) {
      it->second.confirm->resolve(result);
      waiting.erase(it);
    }
  }

  // ---- requests (any thread) -> consumer thread ----

  void post(ConsumerOp op) {
    bool was_empty;
    {
      std::lock_guard lk(ops_mu_);
      was_empty = ops_.empty();
      ops_.push_back(std::move(op));
    }
    if (was_empty) con_wake_.notify();
  }

  // ---- consumer thread ----

  void consumer_main() {
    name_this_thread("bus-consume");
    auto backoff = std::chrono::milliseconds(kBackoffMin);
    bool ever_up = false;
    bool outage_logged = false;
    while (!stopping_.load()) {
      Status st = ok_status();
      kick_consumer_.store(false);
      {
        Connection c;
        ++generation_;
        unacked_.clear();
        consuming_ = false;
        st = c.open(addr_, fmt::format("converge {} consumer", opts_.node_id));
        if (st) st = declare_consumer_side(c.get());
        if (st) {
          backoff = kBackoffMin;
          if (ever_up) {
            count(&Metrics::bus_reconnects_total);
            spdlog::info("bus consumer: connected to {} again", addr_.display);
            restore_pending_ = true;
          }
          ever_up = true;
          outage_logged = false;
          con_up_.store(true);
          kick_publisher_.store(true);
          pub_wake_.notify();
          state_changed();
          st = consume_loop(c);
          con_up_.store(false);
          state_changed();
        }
        if (!st) c.abandon();
      }
      if (stopping_.load()) break;
      note_error("consumer", st.error(), outage_logged);
      // Bindings asked for meanwhile are remembered, and declared at the next connect.
      backoff_wait(con_wake_, kick_consumer_, backoff, [this] { (void)apply_ops(nullptr); });
      backoff = std::min(backoff * 2, std::chrono::milliseconds(kBackoffMax));
    }
    (void)apply_ops(nullptr);  // barriers waiting on us are released
  }

  Status declare_consumer_side(amqp_connection_state_t s) {
    if (auto st = declare_topology(s); !st) return st;
    if (auto st = declare_node_queue(s, node_queue_, amqp_empty_table); !st) return st;
    if (auto st = bind_queue(s, node_queue_, kBase, kNodeNoticeKey); !st) return st;
    if (auto st = bind_queue(s, node_queue_, kBase, kBroadcastKey); !st) return st;
    amqp_table_entry_t args[2];
    args[0].key = amqp_cstring_bytes("x-max-length");
    args[0].value.kind = AMQP_FIELD_KIND_I64;
    args[0].value.value.i64 = kTransientQueueLength;
    args[1].key = amqp_cstring_bytes("x-overflow");
    args[1].value.kind = AMQP_FIELD_KIND_UTF8;
    args[1].value.value.bytes = amqp_cstring_bytes("drop-head");
    amqp_table_t t{2, args};
    if (auto st = declare_node_queue(s, transient_queue_, t); !st) return st;
    if (auto st = bind_queue(s, transient_queue_, kTransientExchange, kHeartbeatKey); !st)
      return st;
    // Every binding this node holds: a new connection's queues start empty of them.
    for (auto id : conversations_)
      if (auto st = bind_conversation_at(s, id); !st) return st;
    for (auto& k : users_)
      if (auto st = bind_queue(s, node_queue_, kBase, k); !st) return st;
    for (auto& k : transient_keys_)
      if (auto st = bind_queue(s, transient_queue_, kTransientExchange, k); !st) return st;
    if (consume_wanted_) return start_consuming(s);
    return ok_status();
  }

  // exchange_c_<id>, bound to conversation.incoming by c_<id> (idempotent).
  Status declare_conversation_at(amqp_connection_state_t s, ConversationId id) {
    const auto exchange = conversation_exchange(id);
    if (auto st = declare_exchange(s, exchange, "fanout"); !st) return st;
    amqp_exchange_bind(s, kChannel, bytes(exchange), amqp_cstring_bytes(kIncoming),
                       bytes(conversation_key(id)), amqp_empty_table);
    return check(s, fmt::format("bind {} to {}", exchange, kIncoming));
  }

  Status bind_conversation_at(amqp_connection_state_t s, ConversationId id) {
    if (auto st = declare_conversation_at(s, id); !st) return st;
    return bind_queue(s, node_queue_, conversation_exchange(id), "");
  }

  Status start_consuming(amqp_connection_state_t s) {
    // Bounds what the broker pushes to this node unacked (center requests and queue_center);
    // the no-ack consumers are bounded by their queues instead.
    amqp_basic_qos(s, kChannel, 0, static_cast<uint16_t>(std::clamp(opts_.prefetch, 1, 65535)), 0);
    if (auto st = check(s, "basic.qos"); !st) return st;
    struct Consumer {
      std::string_view queue;
      std::string_view tag;
      bool no_ack;
    };
    const Consumer consumers[] = {{node_queue_, kTagNode, true},
                                  {transient_queue_, kTagTransient, true},
                                  {kCenterInput, kTagCenter, false},
                                  {kQueueCenter, kTagCenterLog, false}};
    for (const auto& k : consumers) {
      amqp_basic_consume(s, kChannel, bytes(k.queue), bytes(k.tag), 0, k.no_ack ? 1 : 0, 0,
                         amqp_empty_table);
      if (auto st = check(s, fmt::format("consume {}", k.queue)); !st) return st;
    }
    consuming_ = true;
    return ok_status();
  }

  // The requests queued by other threads, in order; with no connection (s null) only the wanted
  // state changes, and the next connection declares it.
  Status apply_ops(Connection* c) {
    std::vector<ConsumerOp> ops;
    {
      std::lock_guard lk(ops_mu_);
      ops.swap(ops_);
    }
    amqp_connection_state_t s = c ? c->get() : nullptr;
    Status result = ok_status();
    for (auto& op : ops) {
      Status st = ok_status();
      switch (op.what) {
        case ConsumerOp::What::conversation:
          if (op.on ? conversations_.insert(op.conversation).second
                    : conversations_.erase(op.conversation) > 0) {
            if (s)
              st = op.on ? bind_conversation_at(s, op.conversation)
                         : unbind_queue(s, node_queue_, conversation_exchange(op.conversation), "");
          }
          break;
        case ConsumerOp::What::user:
          if (op.on ? users_.insert(op.key).second : users_.erase(op.key) > 0) {
            if (s)
              st = op.on ? bind_queue(s, node_queue_, kBase, op.key)
                         : unbind_queue(s, node_queue_, kBase, op.key);
          }
          break;
        case ConsumerOp::What::transient:
          if (op.on ? transient_keys_.insert(op.key).second : transient_keys_.erase(op.key) > 0) {
            if (s)
              st = op.on ? bind_queue(s, transient_queue_, kTransientExchange, op.key)
                         : unbind_queue(s, transient_queue_, kTransientExchange, op.key);
          }
          break;
        case ConsumerOp::What::ack: {
          const uint64_t generation = op.tag >> kTagGenerationShift;
          const uint64_t delivery_tag = op.tag & kDeliveryTagMask;
          // Acking a tag twice, or one of a lost connection, would close the channel.
          if (s && generation == (generation_ & 0xffff) && unacked_.erase(delivery_tag) > 0) {
            if (int rc = amqp_basic_ack(s, kChannel, delivery_tag, 0); rc != AMQP_STATUS_OK)
              st = make_error(Errc::unavailable,
                              fmt::format("basic.ack: {}", amqp_error_string2(rc)));
          }
          break;
        }
        case ConsumerOp::What::consume:
          consume_wanted_ = true;
          if (s && !consuming_) st = start_consuming(s);
          break;
        case ConsumerOp::What::barrier:
          if (op.done) op.done();
          break;
        case ConsumerOp::What::declare:
          if (s) st = declare_conversation_at(s, op.conversation);
          break;
      }
      if (!st) {
        // The connection is gone: the rest only changes what the next one declares.
        result = st;
        s = nullptr;
      }
    }
    return result;
  }

  Status consume_loop(Connection& c) {
    amqp_connection_state_t s = c.get();
    auto last_rx = Clock::now();
    std::vector<RemoteMessage> batch;
    while (!stopping_.load()) {
      if (auto st = apply_ops(&c); !st) return st;
      if (restore_pending_ && pub_up_.load()) {
        restore_pending_ = false;
        if (auto* l = listener_.load()) l->on_bus_restored();
      }
      if (!amqp_data_in_buffer(s) && !amqp_frames_enqueued(s)) {
        // Waits for the broker or for a request (a binding, an ack). The read below runs on
        // every pass, so rabbitmq-c sends its heartbeats even while nothing arrives.
        auto r = wait_for(c.fd(), con_wake_, restore_pending_ ? 10 : kPollMs);
        if (r.socket) last_rx = Clock::now();
      }
      if (auto st = drain(s, batch, last_rx); !st) return st;
      flush(batch);
      if (Clock::now() - last_rx > std::chrono::seconds(3 * kHeartbeatS))
        return make_error(Errc::unavailable, "consumer: no heartbeat from the broker");
    }
    return apply_ops(&c);  // stopping: the acks of what was handled still go out
  }

  void flush(std::vector<RemoteMessage>& batch) {
    if (batch.empty()) return;
    if (auto* l = listener_.load()) l->on_remote_messages(std::move(batch));
    batch.clear();
  }

  // What is immediately available, up to kDrainMax deliveries.
  Status drain(amqp_connection_state_t s, std::vector<RemoteMessage>& batch,
               Clock::time_point& last_rx) {
    for (std::size_t n = 0; n < kDrainMax; ++n) {
      amqp_maybe_release_buffers(s);
      amqp_envelope_t env;
      timeval zero{0, 0};
      auto r = amqp_consume_message(s, &env, &zero, 0);
      if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        last_rx = Clock::now();
        Status st = handle_guarded(s, env, batch);
        amqp_destroy_envelope(&env);
        if (!st) return st;
        continue;
      }
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
        return ok_status();
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
          r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // Not a delivery: the frame waits in rabbitmq-c's queue.
        amqp_frame_t f;
        if (int rc = amqp_simple_wait_frame(s, &f); rc != AMQP_STATUS_OK)
          return make_error(Errc::unavailable,
                            fmt::format("consumer connection: {}", amqp_error_string2(rc)));
        last_rx = Clock::now();
        if (f.frame_type != AMQP_FRAME_METHOD) continue;
        switch (f.payload.method.id) {
          case AMQP_CHANNEL_CLOSE_METHOD: {
            auto* m = static_cast<amqp_channel_close_t*>(f.payload.method.decoded);
            return make_error(Errc::unavailable,
                              fmt::format("consumer channel closed by the broker: {} {}",
                                          m->reply_code, view(m->reply_text)));
          }
          case AMQP_CONNECTION_CLOSE_METHOD: {
            auto* m = static_cast<amqp_connection_close_t*>(f.payload.method.decoded);
            auto e = make_error(Errc::unavailable,
                                fmt::format("consumer connection closed by the broker: {} {}",
                                            m->reply_code, view(m->reply_text)));
            amqp_connection_close_ok_t ok{};
            amqp_send_method(s, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
            return e;
          }
          case AMQP_BASIC_CANCEL_METHOD:
            return make_error(Errc::unavailable,
                              "the broker cancelled a consumer (its queue was deleted)");
          default:
            continue;
        }
      }
      return make_error(Errc::unavailable,
                        fmt::format("consumer connection to {}: {}", addr_.display, describe(r)));
    }
    return ok_status();
  }

  // As publish_guarded, for the listener and decode_notice: the delivery is lost (a center
  // request stays unacked, so the broker hands it out again after the next reconnect).
  Status handle_guarded(amqp_connection_state_t s, const amqp_envelope_t& env,
                        std::vector<RemoteMessage>& batch) {
    try {
      return handle(s, env, batch);
    } catch (const std::exception& e) {
      spdlog::error("bus consumer: {}: a delivery from {} '{}' lost", e.what(), view(env.exchange),
                    view(env.routing_key));
      return ok_status();
    }
  }

  Status handle(amqp_connection_state_t s, const amqp_envelope_t& env,
                std::vector<RemoteMessage>& batch) {
    count(&Metrics::bus_received_total);
    auto* l = listener_.load();
    const auto& p = env.message.properties;
    const auto tag = view(env.consumer_tag);
    const auto body = view(env.message.body);
    if (tag == kTagCenter) {
      CenterRequest r;
      r.body = std::string(body);
      if (p._flags & AMQP_BASIC_REPLY_TO_FLAG) r.reply_to = std::string(view(p.reply_to));
      if (p._flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        r.correlation_id = std::string(view(p.correlation_id));
      if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) r.message_id = std::string(view(p.message_id));
      r.redelivered = env.redelivered != 0;
      r.tag =
          ((generation_ & 0xffff) << kTagGenerationShift) | (env.delivery_tag & kDeliveryTagMask);
      unacked_.insert(env.delivery_tag);
      if (l) l->on_center_request(std::move(r));
      return ok_status();
    }
    if (tag == kTagCenterLog) {
      spdlog::info("queue_center ({} '{}'): {}", view(env.exchange), view(env.routing_key),
                   cut(body, 1000));
      if (int rc = amqp_basic_ack(s, kChannel, env.delivery_tag, 0); rc != AMQP_STATUS_OK)
        return make_error(Errc::unavailable, fmt::format("basic.ack: {}", amqp_error_string2(rc)));
      return ok_status();
    }
    std::string origin = header_text(p, "x-converge-node");
    if (origin == opts_.node_id) return ok_status();  // the local listener had it at publish
    if (!l) return ok_status();
    if (tag == kTagTransient) {
      if (view(env.routing_key) == kHeartbeatKey) {
        if (auto n = opts_.decode_notice(body)) l->on_notice(n);
        return ok_status();
      }
      l->on_transient(std::string(view(env.routing_key)), origin,
                      std::make_shared<const std::string>(body));
      return ok_status();
    }
    const std::string kind = header_text(p, "x-converge-kind");
    if (kind == "msg") {
      auto conversation = header_int(p, "x-conversation");
      auto seq = header_int(p, "x-seq");
      if (!conversation || !seq) {
        spdlog::warn("bus: a message from '{}' without x-conversation / x-seq: dropped", origin);
        return ok_status();
      }
      RemoteMessage m;
      m.origin = std::move(origin);
      m.conversation_id = *conversation;
      m.seq = *seq;
      m.members_version = header_int(p, "x-members-version").value_or(0);
      m.frame = std::make_shared<const std::string>(body);
      batch.push_back(std::move(m));
      if (batch.size() >= kRemoteBatchMax) flush(batch);
      return ok_status();
    }
    if (kind == "notice") {
      flush(batch);  // a notice may concern the messages before it (a member added)
      if (auto n = opts_.decode_notice(body))
        l->on_notice(n);
      else
        spdlog::warn("bus: unreadable notice from '{}': {}", origin, cut(body, 200));
      return ok_status();
    }
    spdlog::debug("bus: ignored a message without x-converge-kind from {} '{}'", view(env.exchange),
                  view(env.routing_key));
    return ok_status();
  }

  const RabbitMqOptions opts_;
  const BrokerAddress addr_;
  const std::string node_queue_;       // converge.node.<id>
  const std::string transient_queue_;  // converge.node.<id>.transient
  std::atomic<uint64_t> losses_{0};    // publish_losses()
  std::atomic<BusListener*> listener_{nullptr};
  std::atomic<bool> stopping_{false};
  std::mutex stop_mu_;  // stop() from the owner and from the destructor

  std::mutex state_mu_;  // last_error_, and start()'s wait for connected()
  std::condition_variable state_cv_;
  std::string last_error_;
  bool refused_ = false;  // the broker refused the login: start() need not wait any longer

  // Publisher thread and the queue in front of it (pub_mu_).
  std::thread publisher_;
  std::mutex pub_mu_;
  std::deque<PublishJob> pub_queue_;
  std::size_t pub_items_ = 0;      // messages, notices, frames... in pub_queue_
  std::size_t pub_transient_ = 0;  // transient frames among them
  Wakeup pub_wake_;
  std::atomic<bool> pub_up_{false};
  std::atomic<bool> pub_exited_{false};
  std::atomic<int> pub_fd_{-1};  // its socket, for stop() to cut a blocked send
  std::atomic<bool> kick_publisher_{false};

  // Consumer thread and its requests (ops_mu_).
  std::thread consumer_;
  std::mutex ops_mu_;
  std::vector<ConsumerOp> ops_;
  Wakeup con_wake_;
  std::atomic<bool> con_up_{false};
  std::atomic<bool> kick_consumer_{false};
  // Owned by the consumer thread:
  std::set<ConversationId> conversations_;  // bound by bind_conversation
  std::set<std::string> users_;             // exchange_base keys bound by bind_user/bind_admin
  std::set<std::string> transient_keys_;    // bound by bind_transient
  bool consume_wanted_ = false;             // set_listener was called
  bool consuming_ = false;                  // on the current connection
  bool restore_pending_ = false;            // reconnected: on_bus_restored when the publisher is up
  uint64_t generation_ = 0;                 // connections so far (stamps center request tags)
  std::unordered_set<uint64_t> unacked_;    // center deliveries handed out, not yet acked
};

}  // namespace

Result<std::unique_ptr<Bus>> make_rabbitmq_bus(RabbitMqOptions options) {
  auto addr = parse_url(options.url);
  if (!addr) return addr.error();
  if (!valid_node_id(options.node_id))
    return make_error(Errc::bad_request, "node id: 1-128 of [A-Za-z0-9_.@-]");
  if (!options.message_frame || !options.encode_notice || !options.decode_notice)
    return make_error(Errc::bad_request,
                      "rabbitmq bus: message_frame, encode_notice and decode_notice are required");
  auto bus = std::make_unique<RabbitMqBus>(std::move(options), std::move(addr.value()));
  if (auto st = bus->start(); !st) return st.error();
  return std::unique_ptr<Bus>(std::move(bus));
}

}  // namespace converge
