#pragma once
// The node's fan-out: which devices are connected here, and on which network thread.
// Each shard belongs to one network thread and is touched only on that thread, so delivering a
// message takes no lock: the hub posts the shared Delivery once per shard that has devices, and
// the shard looks up the members among its own sinks (muduo's one-loop-per-thread fan-out).
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "bus/bus.hpp"

namespace converge {

// A connected device, whatever its protocol. Methods run on the sink's shard thread and must
// not detach the sink synchronously (post the close instead).
class DeviceSink {
 public:
  virtual ~DeviceSink() = default;
  virtual const std::string& sink_user_id() const = 0;
  virtual void deliver(const std::shared_ptr<const Delivery>& d) = 0;
  virtual void notify(const std::shared_ptr<const Notice>& n) = 0;
  // Messages may have been missed (the bus lost its broker): catch up from the store.
  virtual void resync() {}
};

class Hub final : public BusListener {
 public:
  using Post = std::function<void(std::function<void()>)>;

  // Registers a network thread's shard; all shards are added before traffic starts.
  int add_shard(Post post);
  int shard_count() const { return static_cast<int>(shards_.size()); }

  // On the shard's own thread.
  void attach(int shard, DeviceSink* sink);
  void detach(int shard, DeviceSink* sink);

  // Runs `fn` on the shard's thread.
  void post(int shard, std::function<void()> fn) {
    shards_[static_cast<std::size_t>(shard)]->post(std::move(fn));
  }

  void on_delivery(const std::shared_ptr<const Delivery>& d) override;
  // One post per shard for the whole batch: cross-thread wake-ups are per commit, not per message.
  void on_deliveries(const std::vector<std::shared_ptr<const Delivery>>& batch) override;
  void on_notice(const std::shared_ptr<const Notice>& n) override;

  // Every sink of every shard resyncs (on its shard's thread).
  void resync_all();
  // The sinks of these users resync.
  void resync_users(std::vector<std::string> user_ids);

  int64_t sinks() const;  // approximate, for metrics

 private:
  struct Shard;
  static void deliver_here(Shard* s, const Delivery& d, const std::shared_ptr<const Delivery>& p);
  // A large conversation's member list resolved to this shard's sinks, for as long as neither
  // the list (a new membership version is a new list) nor the shard's sinks change: a message
  // to a group of thousands then costs a walk over the members here, not a lookup per member.
  struct Resolved {
    std::shared_ptr<const MemberList> members;  // held: the key cannot be reused meanwhile
    uint64_t epoch = 0;
    std::vector<DeviceSink*> sinks;
  };
  static constexpr std::size_t kResolveFrom = 8;  // members; smaller lists look each one up
  static constexpr std::size_t kResolvedMembers = 1 << 18;  // members held in a shard's cache
  struct Shard {
    Post post;
    std::unordered_map<std::string, std::vector<DeviceSink*>> by_user;  // shard thread only
    std::atomic<int64_t> count{0};  // sinks attached; read by publishers to skip empty shards
    uint64_t epoch = 0;             // bumped by every attach and detach (shard thread only)
    std::unordered_map<const MemberList*, Resolved> resolved;  // shard thread only
    std::size_t resolved_members = 0;
  };
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace converge
