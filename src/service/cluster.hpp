#pragma once
// The node's side of the bus: what this node is interested in, and what other nodes send it.
//
// Interest: the users with a device here, and the conversations those users are in. The first
// device of a user binds the user and their conversations on the bus (and waits until the
// bindings hold, so that nothing stored after the device read its positions can pass it by);
// the last one unbinds them. Membership notices keep the conversations current, and a message
// whose membership version is not the one known here makes the node read the members again.
//
// Inbox: stored messages published by other nodes are handed to the hub for the local members
// of their conversation, in the broker's order, on one thread of their own ("inbox": it may read
// the store), with the frame they came in as the WebSocket frame (serialized once, by the node
// that stored them). Device streams put them in seq order and fill gaps from the store.
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bus/bus.hpp"
#include "service/hub.hpp"
#include "service/work_pool.hpp"

namespace converge {

class Service;
struct Metrics;

struct NodeInfo {
  std::string id;
  int64_t started_at_ms = 0;
  int64_t last_seen_ms = 0;  // its last heartbeat (now, for this node)
  int64_t connections = 0;   // devices connected to it
  std::string address;       // the URL clients reach it at
  int64_t cpu_percent = 0;   // its CPU use over its last heartbeat interval, % of its machine
  bool self = false;
  int64_t publish_losses = 0;  // as its last heartbeat said
};

struct ClusterOptions {
  std::string node_id;
  int64_t heartbeat_ms = 1000;  // how often this node says it is alive
  int64_t timeout_ms = 5000;    // a node silent this long is taken for dead
};

class Cluster final : public BusListener {
 public:
  Cluster(Service& svc, Bus& bus, Hub& hub, Metrics& metrics, ClusterOptions opts = {});
  // Starts the heartbeat thread ("cluster"). A node that falls silent is dropped, and every
  // local stream catches up from the store: what it stored but never published comes from there.
  void start();
  // This node and the others alive.
  std::vector<NodeInfo> nodes() const;
  // The URL clients reach this node at (once it listens), for the others' node lists.
  void set_address(std::string url);
  int64_t timeout_ms() const { return opts_.timeout_ms; }
  ~Cluster() override;

  // A device of `user_id` is online here / is gone. device_online blocks (store read, bus
  // bindings): call it on the work pool, before reading the device's positions.
  // An admin's devices also bind its admin notices (m_.<uid>).
  void device_online(const std::string& user_id, bool is_admin);
  void device_offline(const std::string& user_id, bool is_admin);
  // Seed 000's plain AMQP clients (gateway/amqp): who handles their envelopes.
  void set_center_handler(std::function<void(CenterRequest)> h) { center_ = std::move(h); }
  // Who handles transient traffic whose key starts with `prefix` (the MQTT broker's "mqtt",
  // voice rooms'...): set before any such key is bound; called on a bus thread, so it must
  // not block.
  using TransientHandler = std::function<void(const std::string& key, const std::string& origin,
                                              std::shared_ptr<const std::string> payload)>;
  void add_transient_handler(std::string prefix, TransientHandler h) {
    transient_.emplace_back(std::move(prefix), std::move(h));
  }
  void stop();  // drains the inbox

  // --- BusListener ---
  void on_delivery(const std::shared_ptr<const Delivery>& d) override { hub_.on_delivery(d); }
  void on_deliveries(const std::vector<std::shared_ptr<const Delivery>>& b) override {
    hub_.on_deliveries(b);
  }
  void on_notice(const std::shared_ptr<const Notice>& n) override;
  void on_remote_messages(std::vector<RemoteMessage> batch) override;
  void on_center_request(CenterRequest r) override;
  void on_bus_restored() override;
  void on_transient(const std::string& key, const std::string& origin,
                    std::shared_ptr<const std::string> payload) override {
    for (auto& [prefix, h] : transient_)
      if (key.starts_with(prefix)) return h(key, origin, std::move(payload));
  }

  // For tests and metrics.
  std::size_t conversations_bound() const;
  bool user_online(const std::string& user_id) const;

 private:
  struct Conv {
    std::set<std::string> users;             // local users in it
    int64_t members_version = -1;            // as last read here; -1: not read yet
    std::shared_ptr<const MemberList> list;  // `users`, as a Delivery takes it
  };
  // Locked: mu_ held.
  void add_locked(ConversationId id, const std::string& user, int64_t version);
  void remove_locked(ConversationId id, const std::string& user);
  std::shared_ptr<const MemberList> members_for(ConversationId id, int64_t version);

  void beat();  // the heartbeat thread's loop

  std::vector<std::pair<std::string, TransientHandler>> transient_;  // set before start
  Service& svc_;
  Bus& bus_;
  Hub& hub_;
  Metrics& metrics_;
  const ClusterOptions opts_;
  const int64_t started_at_ms_;
  WorkPool inbox_;
  std::thread beater_;
  std::mutex beat_mu_;
  std::condition_variable beat_cv_;
  bool stopping_ = false;
  std::unordered_map<std::string, NodeInfo> peers_;  // guarded by mu_
  std::string address_;                              // guarded by mu_
  // Per node: {started_at, publish_losses} of its last heartbeat, kept when it is taken for
  // dead (guarded by mu_).
  std::unordered_map<std::string, std::pair<int64_t, int64_t>> losses_seen_;
  int64_t cpu_percent_ = 0;  // guarded by mu_
  std::function<void(CenterRequest)> center_;

  mutable std::mutex mu_;
  std::unordered_map<std::string, int> devices_;  // online devices per local user
  std::unordered_map<std::string, int> admins_;   // of which admins' (m_.<uid> bound)
  std::unordered_map<std::string, std::set<ConversationId>> user_convs_;
  std::unordered_map<ConversationId, Conv> convs_;
};

}  // namespace converge
