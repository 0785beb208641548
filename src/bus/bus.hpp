#pragma once
// The bus interface: what must reach every node that has an interested device. Engines: local/
// (in-process, single node) and rabbitmq/ (cluster, seed-000 topology: docs/architecture.md).
//
// Three kinds of traffic cross it:
//  - stored messages (after commit; the store has them, so the bus may lose some: a node heals
//    a gap or an outage from the store, see BusListener::on_bus_restored);
//  - notices (membership changes, admin events, broadcasts, token revocations);
//  - transient traffic that is never stored (typing, presence, voice frames): best effort,
//    non-durable, dropped rather than queued without bound.
// A node tells the bus what it is interested in (the conversations and users its devices
// belong to, the transient keys of its rooms); an engine delivers a node only that.
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "model/model.hpp"

namespace converge {

// A serialized form of an immutable payload, computed once by whichever thread first needs it and
// then shared by every recipient of that wire format. The fast path (made already) is one
// acquire load and a reference count; the first maker takes a mutex. (Not std::atomic of a
// shared_ptr: libstdc++ 12's releases its internal lock with relaxed order after a load, which
// ThreadSanitizer rightly reports against the next store.)
class WireCache {
 public:
  // ws_frame: {"cmd":"msg","data":{...}}; json_data: the stored message JSON alone (MQTT).
  enum Format { ws_frame = 0, json_data, kFormats };
  template <class Make>
  std::shared_ptr<const std::string> get(Format f, Make&& make) const {
    if (ready_[f].load(std::memory_order_acquire)) return slots_[f];  // never written again
    std::lock_guard lk(mu_);
    if (!ready_[f].load(std::memory_order_relaxed)) {
      slots_[f] = std::make_shared<const std::string>(make());
      ready_[f].store(true, std::memory_order_release);
    }
    return slots_[f];
  }
  // Fills a slot with bytes already in that form (a message from another node arrives as its
  // frame): before the object is shared.
  void set(Format f, std::shared_ptr<const std::string> bytes) {
    std::lock_guard lk(mu_);
    slots_[f] = std::move(bytes);
    ready_[f].store(slots_[f] != nullptr, std::memory_order_release);
  }

 private:
  mutable std::mutex mu_;
  mutable std::atomic<bool> ready_[kFormats] = {};
  mutable std::shared_ptr<const std::string> slots_[kFormats];
};

using MemberList = std::vector<std::string>;  // user ids, sorted

// A stored message on its way to the devices of the conversation's members.
struct Delivery {
  Message msg;
  // Local deliveries: the members at store time. From another node: the members this node knows
  // to have devices here (ClusterInbox). Null for gap fills.
  std::shared_ptr<const MemberList> members;
  int64_t members_version = 0;  // the conversation's membership version at store time
  WireCache wire;
};

// A stored message as another node published it: ids in the clear, the seed-000 envelope
// ({"cmd":"msg","data":{...}}, what plain AMQP clients receive) as the body.
struct RemoteMessage {
  std::string origin;  // the publishing node's id
  ConversationId conversation_id = 0;
  Seq seq = 0;
  int64_t members_version = 0;
  std::shared_ptr<const std::string> frame;
};

// A seed-000 envelope a plain AMQP client published to conversation.outgoing (queue
// chat-app-message). The node that receives it validates and stores it, answers on `reply_to`
// when the client gave one, then calls Bus::center_done(tag) (until then the broker keeps it).
struct CenterRequest {
  std::string body;
  std::string reply_to;        // AMQP reply_to property; empty: nowhere to answer
  std::string correlation_id;  // echoed in the answer
  std::string message_id;      // AMQP message_id: stands for a missing client_msg_id
  bool redelivered = false;    // handed out before (to a node that died before answering)
  uint64_t tag = 0;
};

// Seed 000's exchanges for the backend services (load balancer, media, GB module).
enum class BackendExchange { base, comm_gb };

// A notification: an admin event to one user, a broadcast to every online user, a change to
// a conversation's membership told to the members concerned, or tokens of a user revoked.
struct Notice {
  enum class Kind { event, broadcast, conversation, revoke, node, admin };
  Kind kind = Kind::event;
  std::string user_id;       // event, admin and revoke target; empty for broadcast
  std::string payload_json;  // event/broadcast/admin: the `data` object, serialized
  // event: the push's cmd; empty = "event" (an admin's event). "application", "invitation" and
  // "friend_request" carry a request (DESIGN.md section 8) as payload_json.
  std::string event_cmd;
  // conversation: what changed (created | member_added | member_removed | updated |
  // role_changed | owner_changed), the conversation as it now is, and who is told (its members,
  // and a removed member); event_json: the change's system message body ("" for none).
  std::string change;
  std::string event_json;
  Conversation conversation;
  std::vector<std::string> user_ids;
  // revoke: the user's connections opened with token `token_hash` close (4001); with
  // token_hash empty, every one of them except those opened with `keep_token_hash`.
  std::string token_hash;
  std::string keep_token_hash;
  // node: a node's heartbeat (its id in user_id), every node_heartbeat_ms: the others notice
  // one that stops.
  int64_t started_at_ms = 0;
  int64_t connections = 0;
  std::string address;         // the URL clients reach it at
  int64_t publish_losses = 0;  // its Bus::publish_losses()
  int64_t cpu_percent = 0;     // its CPU use since its last heartbeat, % of the machine's CPUs
  WireCache wire;
};

class BusListener {
 public:
  virtual ~BusListener() = default;
  virtual void on_delivery(const std::shared_ptr<const Delivery>& d) = 0;
  // A commit's worth at once, in seq order per conversation.
  virtual void on_deliveries(const std::vector<std::shared_ptr<const Delivery>>& batch) {
    for (auto& d : batch) on_delivery(d);
  }
  virtual void on_notice(const std::shared_ptr<const Notice>& n) = 0;
  // Stored messages of conversations this node bound, published by any node (this one's own
  // are not repeated), in the order the broker delivered them: per publishing node in seq order,
  // across nodes not necessarily.
  virtual void on_remote_messages(std::vector<RemoteMessage> /*batch*/) {}
  virtual void on_transient(const std::string& /*key*/, const std::string& /*origin*/,
                            std::shared_ptr<const std::string> /*payload*/) {}
  virtual void on_center_request(CenterRequest /*r*/) {}
  // The engine lost the broker and has it again (queues and bindings declared anew): what other
  // nodes published meanwhile may be missing here, so every local stream catches up from the
  // store.
  virtual void on_bus_restored() {}
};

class Bus {
 public:
  virtual ~Bus() = default;
  virtual std::string engine_name() const = 0;
  // The node's listener; set once before publishing starts.
  virtual void set_listener(BusListener* l) = 0;
  // A commit's stored messages, in seq order per conversation; engines keep that order for
  // local listeners.
  virtual void publish(std::vector<std::shared_ptr<const Delivery>> batch) = 0;
  virtual void publish(std::shared_ptr<const Notice> n) = 0;

  // Interest, set by the node as its devices come and go (idempotent: the caller counts). The
  // local engine has nothing to do.
  virtual void bind_conversation(ConversationId /*id*/, bool /*on*/) {}
  // A new conversation: its per-conversation exchange (seed 000's exchange_c_<id>) exists from
  // now on, so that a plain AMQP client may bind its queue to it before any node has.
  virtual void declare_conversation(ConversationId /*id*/) {}
  virtual void bind_user(const std::string& /*user_id*/, bool /*on*/) {}
  // An admin with a device here: its admin notices (seed 000's m_.<uid>) come to this node.
  virtual void bind_admin(const std::string& /*user_id*/, bool /*on*/) {}
  virtual void bind_transient(const std::string& /*key*/, bool /*on*/) {}
  // Calls `done` (on an engine thread: never wait for it inside a listener callback) once every
  // bind_* request made before this call is in effect at the broker (or
  // the broker is away: on_bus_restored follows), on an engine thread; the local engine calls it
  // at once. What a node reads from the store after `done` cannot miss what is published later.
  virtual void when_bound(std::function<void()> done) { done(); }
  // To the other nodes bound to `key` only (the caller serves its own devices): never stored,
  // dropped when the broker or a receiver is behind.
  virtual void publish_transient(const std::string& /*key*/,
                                 std::shared_ptr<const std::string> /*payload*/) {}

  // Seed 000's center input: the delivery `tag` of a CenterRequest is handled.
  virtual void center_done(uint64_t /*tag*/) {}
  // An answer to a plain AMQP client (its reply_to queue).
  virtual void reply(const std::string& /*reply_to*/, const std::string& /*correlation_id*/,
                     std::string /*body*/) {}
  // A notification for backend services (exchange_base / exchange_comm_gb, routing key as in
  // seed 000: "balance", "comm_gb", "center", ...), confirmed by the broker: blocks up to a few
  // seconds, so never call it on a network thread. unavailable without a broker.
  virtual Status publish_backend(BackendExchange /*exchange*/, const std::string& /*routing_key*/,
                                 std::string /*body*/) {
    return make_error(Errc::unavailable, "no message broker: this node runs without a bus");
  }

  // Stops the engine's threads: no listener call after it returns. The composition root calls it
  // before it tears down what the listener uses.
  virtual void stop() {}

  // False while the engine has lost its broker (/healthz reports it).
  virtual bool connected() const { return true; }
  // How many times stored messages may have failed to reach the broker (a publishing connection
  // lost with publishes in flight, or deliveries dropped): the node says so in its heartbeats,
  // and the others catch up from the store when it grows.
  virtual uint64_t publish_losses() const { return 0; }
  virtual std::string node_id() const { return "local"; }
};

}  // namespace converge
