#pragma once
// The broker's shared state and routing (broker.cpp), used by the per-connection state machine
// (client.cpp) and the $SYS publisher (sys.cpp). Internal to gateway/mqtt.
//
// Threads: any thread may call Core; `mu` guards the session map, the subscription and retained
// trees and the timers. Critical sections only match and collect; what is sent to a client is
// posted to its Link's thread after the lock is released.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gateway/mqtt/broker.hpp"
#include "gateway/mqtt/session.hpp"
#include "gateway/mqtt/sub_tree.hpp"

namespace converge::mqtt {

class ClientImpl;

// The broker's own counters, for $SYS/broker/... (the Prometheus ones are in Metrics).
struct BrokerStats {
  std::atomic<uint64_t> messages_received{0};  // PUBLISH packets from clients
  std::atomic<uint64_t> messages_sent{0};      // PUBLISH packets to clients
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> dropped{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<int64_t> connected{0};
};

// The result of Core::attach_session.
struct Attached {
  std::shared_ptr<Session> session;
  bool present = false;
  // The client id names a session of another authenticated user: neither taken over nor
  // resumed (nobody may knock another user's device off, or take its session).
  bool refused = false;
};

class Core : public std::enable_shared_from_this<Core> {
 public:
  Core(BrokerOptions opts, Service& svc, Metrics& metrics, Acl acl, TopicNamespace* im);
  ~Core();

  const BrokerOptions opts;
  Service& svc;
  Metrics& metrics;
  const Acl acl;
  TopicNamespace* const im;
  const Clock::time_point started = Clock::now();
  BrokerStats stats;
  std::atomic<bool> stopping{false};

  // --- sessions (called by a ClientImpl on its thread) ---
  // Gives `client` the session of `client_id` (a new one when `clean_start`, when there is none,
  // or when it belongs to another username), with `will` as its will. A connection still
  // serving it is told to close (taken over); a will still pending is published (the previous
  // session ended) or cancelled (the session continues).
  // `loaded` is what load_session read when this node had no session of `client_id`.
  Attached attach_session(const std::shared_ptr<ClientImpl>& client,
                          const std::shared_ptr<Link>& link, const std::string& client_id,
                          const std::optional<std::string>& username, bool clean_start,
                          uint32_t expiry_s, std::optional<Will> will,
                          std::optional<StoredSession> loaded = std::nullopt);
  // Whether a CONNECT resuming `client_id` must read its session from the store first (a
  // persistent store and no session here), and that read (blocking: on the work pool).
  bool load_needed(const std::string& client_id, bool clean_start);
  std::optional<StoredSession> load_session(const std::string& client_id);
  // The connection of `client` ended: the session goes offline (or ends, expiry 0); its will is
  // published now, later (will delay), or not at all (`send_will` false: DISCONNECT 0x00).
  void detach_session(const ClientImpl* client, const std::shared_ptr<Session>& s, bool send_will);
  void set_expiry(const std::shared_ptr<Session>& s, uint32_t expiry_s);

  // --- subscriptions ---
  // True when the subscription is new (retain handling 1), false when it replaced one.
  //
  // Arrival order across connections. Connections are served by several threads, so a
  // SUBSCRIBE that reached the kernel before another client's PUBLISH can be handled after it
  // (its thread was not scheduled yet); a one-thread broker would have applied them in the
  // order they arrived, and clients that subscribe and then have another connection publish
  // (without waiting for the SUBACK) rely on that. So the broker keeps the messages it routed
  // in the last kLateWindow (bounded), and a new subscription handled at `arrived_ns` also
  // gets, in `late`, those that matched it and arrived after its SUBSCRIBE: what it would have
  // got had it been handled in arrival order. Not for a shared subscription, not a message of
  // its own with no local, not one the session got through another of its subscriptions.
  bool subscribe(const std::shared_ptr<Session>& s, const std::string& filter, const SubOptions& o,
                 int64_t arrived_ns, std::vector<MessagePtr>* late = nullptr);
  bool unsubscribe(const std::shared_ptr<Session>& s, const std::string& filter);
  // The IM namespaces' subscriptions are kept in the session (and its store) but routed by the
  // TopicNamespace, not the broker's tree.
  void keep_im_subscription(const std::shared_ptr<Session>& s, const std::string& filter,
                            uint8_t qos);
  void drop_im_subscription(const std::shared_ptr<Session>& s, const std::string& filter);
  TopicNamespace::Subscriptions im_subscriptions(const std::shared_ptr<Session>& s);
  // Whether a topic or filter ("$share/g/..." too) is the IM namespaces'.
  bool in_im(std::string_view topic_or_filter) const;
  // The retained messages `filter` matches (expired ones are dropped), but those in `late`
  // (they arrived after the SUBSCRIBE: delivered as they were published, not as retained).
  std::vector<MessagePtr> retained_for(std::string_view filter,
                                       const std::vector<MessagePtr>& late = {});

  // --- routing (any thread) ---
  // Stores or clears the retained message (m->retain) and delivers `m` to every matching
  // subscription; returns how many sessions it was delivered to.
  // In a cluster, a message of a topic that crosses nodes is also sent to the other nodes (then
  // the count has one more, for "no matching subscribers": this node cannot know); not one
  // that came from the bus (`from_bus`).
  std::size_t publish(const MessagePtr& m, bool from_bus = false);
  void from_bus(std::string_view bytes);
  // Cluster: another node now serves `client_id`'s session. Its connection here, if any, is
  // closed as taken over, and the session leaves this node's memory (not the store).
  void taken_over_elsewhere(const std::string& client_id);
  // One delivery: QoS 0 is posted to the session's connection (dropped when offline), QoS 1/2
  // is queued in the session and a pump posted to its connection.
  void deliver(const std::shared_ptr<Session>& s, Outgoing o);
  // The session's next queued delivery (with its mutex held).
  std::optional<Outgoing> dequeue(Session& s);
  MessagePtr will_message(const std::string& client_id, const Will& w);

  // --- lifetime ---
  void add_client(const std::shared_ptr<ClientImpl>& c, std::shared_ptr<Link> link);
  void remove_client(const ClientImpl* c);
  // Every connection not yet ended, with its link (for stop()).
  std::vector<std::pair<std::weak_ptr<ClientImpl>, std::shared_ptr<Link>>> clients();
  void start();
  void stop();

  // --- $SYS (sys.cpp) ---
  void publish_sys();

  void count_dropped(uint64_t n = 1);
  void count_refused();

 private:
  // Keeps `m` among the recent messages (Core::subscribe), dropping those past the window.
  void remember_locked(const MessagePtr& m);
  // `keep_record`: another node serves it now, the store keeps it.
  void remove_session_locked(Session& s, bool keep_record = false);
  // Cluster: a subscription `filter` entered (+1) or left (-1) the tree; binds or unbinds its
  // key on the bus when its count leaves or reaches zero.
  void count_binding_locked(const std::string& filter, int delta);
  // (Re)files the session under its earliest deadline, or nowhere when it has none.
  void schedule_locked(const std::shared_ptr<Session>& s);
  void unschedule_locked(Session& s);
  void timer_loop();
  void expire_due(Clock::time_point now, std::vector<MessagePtr>& wills);

  std::mutex mu_;
  std::unique_ptr<SessionStore> store_;
  std::unordered_map<SubscriberId, std::shared_ptr<Session>> by_id_;
  SubTree subs_;
  RetainedTree<MessagePtr> retained_;
  std::unordered_map<std::string, uint64_t> share_next_;  // round robin per "group\0filter"
  Deadlines deadlines_;   // offline sessions with a delayed will or an expiry
  const bool clustered_;  // !opts.sole_node
  std::unordered_map<std::string, int64_t> bindings_;  // bus key -> subscriptions behind it
  int64_t general_subs_ = 0;                           // in the tree: kLongKey while > 0
  // The messages routed in the last kLateWindow, in the order they were routed, with when.
  struct Recent {
    int64_t routed_ns;
    MessagePtr m;
  };
  std::deque<Recent> recent_;
  std::size_t recent_bytes_ = 0;  // their topics and payloads

  std::mutex clients_mu_;
  std::unordered_map<const ClientImpl*, std::pair<std::weak_ptr<ClientImpl>, std::shared_ptr<Link>>>
      clients_;

  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  bool timer_stop_ = false;
  std::thread timer_;
};

// Whether a topic or filter is in the IM namespaces (user/..., group/...) when there is no
// TopicNamespace to ask: then they are refused.
bool im_prefix(std::string_view topic_or_filter);

// PUBLISH bytes for `p` (whose payload is empty) carrying `payload`: one copy of the payload.
std::string encode_publish(const Publish& p, std::string_view payload, Version v);

}  // namespace converge::mqtt
