#pragma once
// Who is connected: each connection of a device (any protocol) while it is attached.
//
// A node knows its own connections in memory. In a cluster it also shares them through the
// store (PresenceRow, an UNLOGGED table on PostgreSQL), written behind by a thread of its own
// ("presence") so that a connection storm costs a few batched statements, not a round trip per
// connect: a connection is visible to other nodes within `flush_ms`. Rows belong to their node;
// a node clears its own rows when it starts, and whenever a write fails (the server restarted,
// which empties an UNLOGGED table) it puts its whole set back. A node that dies leaves rows
// behind: readers ignore the rows of nodes that are not alive (the cluster's heartbeats), and
// the first node that notices the death deletes them. So a dead node's users count as offline
// within the cluster's node timeout.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/error.hpp"
#include "store/store.hpp"

namespace converge {

class Presence {
 public:
  explicit Presence(std::string node_id) : node_id_(std::move(node_id)) {}
  ~Presence();
  Presence(const Presence&) = delete;
  Presence& operator=(const Presence&) = delete;

  // A connection of `user`'s `device` is here (protocol: "ws", "mqtt", ...): its id, for detach.
  int64_t attach(const std::string& user, const std::string& device, const std::string& protocol);
  void detach(int64_t conn_id);
  // This node's connections of these users.
  std::vector<PresenceRow> local(std::span<const std::string> users) const;
  bool online_here(const std::string& user) const;
  std::size_t connections() const;

  // Cluster: shares this node's rows through `store` from a thread of its own; its first pass
  // replaces what an earlier run of this node left.
  void start_sharing(Store& store, int64_t flush_ms = 50);
  // Another node was taken for dead: its rows go (idempotent; any node may do it).
  void forget_node(const std::string& node_id);
  void stop();

 private:
  void run();  // the "presence" thread
  // One pass: pending changes, or everything again after a failure. False on a store error.
  bool flush(StoreSession& s);

  const std::string node_id_;
  mutable std::mutex mu_;
  int64_t next_id_ = 1;
  std::unordered_map<int64_t, PresenceRow> conns_;
  std::unordered_multimap<std::string, int64_t> by_user_;
  // What the store has not been told yet (sharing only).
  bool sharing_ = false;
  bool resync_ = false;  // the next flush clears this node's rows and puts them all back
  std::set<int64_t> put_, drop_;
  std::set<std::string> forget_;
  bool stopping_ = false;
  std::condition_variable cv_;
  Store* store_ = nullptr;
  int64_t flush_ms_ = 50;
  std::thread thread_;
};

}  // namespace converge
