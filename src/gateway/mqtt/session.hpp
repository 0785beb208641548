#pragma once
// MQTT sessions (MQTT 5 section 4.1): what outlives one connection of a client id — its
// subscriptions, the QoS 1/2 messages queued for it and in flight to it, the packet ids of
// QoS 2 publishes it has not released, its will, its expiry — and the seam through which the
// broker changes them (SessionStore), so that they can be kept in the store rather than in one
// process's memory.
//
// Locking (broker.cpp): a Session's identity is fixed at creation; the fields marked "broker"
// are guarded by the broker's mutex, those marked "mu" by the session's own mutex (the
// delivery path takes only that one). Lock order: broker mutex, then a session's mutex.
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gateway/mqtt/codec/packet.hpp"
#include "gateway/mqtt/sub_tree.hpp"
#include "store/store.hpp"

namespace converge::mqtt {

using Clock = std::chrono::steady_clock;

class Link;
class ClientImpl;

// An application message as published: immutable once routed, shared by every recipient.
struct Message {
  std::string topic;
  std::string payload;
  uint8_t qos = 0;
  bool retain = false;
  // The properties forwarded to subscribers (payload format, content type, response topic,
  // correlation data, user properties); never a topic alias, subscription identifiers or the
  // expiry interval, which are per delivery.
  Properties properties;
  std::optional<Clock::time_point> expires_at;  // MQTT 5 Message Expiry Interval
  std::string publisher;                        // client id; empty for the broker's own ($SYS)
  // When the PUBLISH reached this node (arrival_now()'s clock; the kernel's receive time for
  // a client's over TCP): what a SUBSCRIBE handled later on another thread is ordered against.
  int64_t arrived_ns = 0;

  bool expired(Clock::time_point now) const { return expires_at && *expires_at <= now; }
};
using MessagePtr = std::shared_ptr<const Message>;

// One delivery of a message to one session.
struct Outgoing {
  MessagePtr msg;
  uint8_t qos = 0;                         // min(published QoS, subscription QoS)
  bool retain = false;                     // the RETAIN flag on the wire
  std::vector<uint32_t> subscription_ids;  // of every matching subscription that has one
  std::function<void()> acked;             // IM deliveries: runs once the client acknowledged
};

// A QoS 1/2 delivery sent and not yet acknowledged.
struct Inflight {
  Outgoing out;
  uint16_t packet_id = 0;
  bool released = false;  // QoS 2: PUBREC received, PUBREL sent, PUBCOMP awaited
};

struct Session;
// Offline sessions by their next deadline (a delayed will or the expiry): the broker's timer.
using Deadlines = std::multimap<Clock::time_point, std::shared_ptr<Session>>;

struct Session {
  Session(std::string cid, std::optional<std::string> user, SubscriberId sid)
      : client_id(std::move(cid)), username(std::move(user)), id(sid) {}

  // Identity, fixed at creation (a connection with another username starts a new session).
  const std::string client_id;
  const std::optional<std::string> username;
  const SubscriberId id;  // the subscriber id in the broker's SubTree

  // broker
  uint32_t expiry_s = 0;                            // after the connection ends; 0: ends with it
  std::map<std::string, SubOptions> subscriptions;  // filter as subscribed ("$share/g/f" too)
  std::optional<Will> will;                         // of the live or last connection
  std::optional<Clock::time_point> will_at;         // offline: when the delayed will is due
  std::optional<Clock::time_point> expires_at;      // offline: when the session ends
  std::optional<Deadlines::iterator> deadline;      // offline: its entry in the broker's timer
  int64_t disconnected_at_ms = 0;                   // wall clock, for a persistent store; 0: online
  bool online = false;
  bool removed = false;  // ended (also under mu); deliveries still in the air land nowhere

  // mu
  std::mutex mu;
  const void* owner_key = nullptr;  // the connection serving the session (a ClientImpl)
  std::weak_ptr<ClientImpl> owner;  // that connection
  std::shared_ptr<Link> owner_link;
  bool kick_pending = false;         // a pump is posted to the owner's thread
  std::deque<Outgoing> queue;        // QoS 1/2 waiting for the inflight window or a connection
  std::deque<Inflight> inflight;     // QoS 1/2 sent, in send order
  std::set<uint16_t> incoming_qos2;  // QoS 2 publishes received (PUBREC sent), not released
  uint16_t last_packet_id = 0;
};

// What a persistent SessionStore reads back of a session (store/store.hpp's row).
using StoredSession = MqttSessionRow;

// Where sessions live. The broker calls every method with its mutex held, except enqueue /
// dequeue, which it calls with only that session's mutex held (from any thread: deliveries come
// from the publishers' threads), and load, which it calls with no lock held, off the
// connections' threads; an implementation must not call back into the broker.
//
// Sessions are in memory while this node serves them. A persistent store also writes each
// change behind (a thread of its own batches them; nothing waits for the database), so that a
// session with an expiry survives the node: the next node to see its client id (this one after
// a restart, or another of the cluster) reads it back with load() and the broker restore()s it.
// What is kept is the session's identity, expiry and subscriptions (the IM namespaces' filters
// too: Session::subscriptions holds both); queued general-topic messages and wills are not
// (IM messages come back from the device's cursors in the store).
class SessionStore {
 public:
  virtual ~SessionStore() = default;
  virtual std::shared_ptr<Session> find(std::string_view client_id) = 0;
  // A new, empty session for `client_id` (the caller has erased any previous one).
  virtual std::shared_ptr<Session> create(const std::string& client_id,
                                          std::optional<std::string> username) = 0;
  virtual void erase(const Session& s) = 0;
  // Drops the session from memory only: another node serves it now (and keeps its record).
  virtual void forget(const Session& s) { erase(s); }
  virtual void set_expiry(Session& s, uint32_t expiry_s) = 0;
  virtual void set_will(Session& s, std::optional<Will> will) = 0;
  virtual void subscribed(Session& s, const std::string& filter, const SubOptions& o) = 0;
  virtual void unsubscribed(Session& s, const std::string& filter) = 0;
  // Appends a QoS 1/2 delivery; false (and nothing kept) when the queue is full.
  virtual bool enqueue(Session& s, Outgoing o) = 0;
  virtual std::optional<Outgoing> dequeue(Session& s) = 0;
  virtual std::size_t size() const = 0;

  // Persistence; the in-memory store keeps nothing and reads nothing back.
  virtual bool persistent() const { return false; }
  // Blocking: what the store kept of `client_id`, unless it has expired or was erased since.
  virtual std::optional<StoredSession> load(const std::string& client_id) {
    (void)client_id;
    return std::nullopt;
  }
  // A session made of what load() read (its expiry and subscriptions; it is not written back).
  virtual std::shared_ptr<Session> restore(const StoredSession& row);
  // Its connection began / ended.
  virtual void connected(Session& s) { (void)s; }
  virtual void disconnected(Session& s) { (void)s; }
  // Writes what is pending and stops writing (the broker stops).
  virtual void close() {}
};

std::unique_ptr<SessionStore> make_memory_session_store(std::size_t max_queued_messages);
// Sessions in memory, written behind into `store` from a thread of its own ("mqtt-sessions"),
// which also drops expired sessions now and then. At start, the sessions this node served when
// it stopped (a sole node: every node's) count as disconnected then: their expiry runs from
// there. In a cluster, those of a node taken for dead are released by the presence
// (service/presence.cpp).
std::unique_ptr<SessionStore> make_persistent_session_store(Store& store, std::string node_id,
                                                            bool sole_node,
                                                            std::size_t max_queued_messages);

}  // namespace converge::mqtt
