#pragma once
// The bus interface: what must reach every node that has an interested device. Engines: local/
// (in-process, single node) and rabbitmq/ (cluster, seed-000 topology) later.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/model.hpp"

namespace converge {

// A serialized form of an immutable payload, computed once by whichever thread first needs it and
// then shared by every recipient of that wire format.
class WireCache {
 public:
  enum Format { ws_frame = 0, kFormats };
  template <class Make>
  std::shared_ptr<const std::string> get(Format f, Make&& make) const {
    auto cur = slots_[f].load(std::memory_order_acquire);
    if (cur) return cur;
    auto made = std::make_shared<const std::string>(make());
    std::shared_ptr<const std::string> expected;
    if (slots_[f].compare_exchange_strong(expected, made)) return made;
    return expected;  // another thread won the race; use its copy
  }

 private:
  mutable std::atomic<std::shared_ptr<const std::string>> slots_[kFormats];
};

using MemberList = std::vector<std::string>;  // user ids, sorted

// A stored message on its way to the devices of the conversation's members.
struct Delivery {
  Message msg;
  std::shared_ptr<const MemberList> members;  // snapshot at store time; null for gap fills
  WireCache wire;
};

// A notification: an admin event to one user, a broadcast to every online user, a change to
// a conversation's membership told to the members concerned, or tokens of a user revoked.
struct Notice {
  enum class Kind { event, broadcast, conversation, revoke };
  Kind kind = Kind::event;
  std::string user_id;       // event and revoke target; empty for broadcast
  std::string payload_json;  // event/broadcast: the `data` object, serialized
  // conversation: what changed (created | member_added | member_removed), the conversation as it
  // now is, and who is told (its members, and a removed member).
  std::string change;
  Conversation conversation;
  std::vector<std::string> user_ids;
  // revoke: the user's connections opened with token `token_hash` close (4001); with
  // token_hash empty, every one of them except those opened with `keep_token_hash`.
  std::string token_hash;
  std::string keep_token_hash;
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
};

}  // namespace converge
