#pragma once
// One device's live stream: hands it each conversation's messages in seq order, with no gap.
// A live delivery ahead of the device's position is held while the missing range is read from the
// store; duplicates (at or below the position) are dropped. The same mechanism covers a device
// that reconnects (the stream starts at its cursor and catches up) and, in a cluster, messages
// that reach this node out of seq order. Runs on its owner's network thread only.
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "bus/bus.hpp"
#include "model/requests.hpp"

namespace converge {

class Service;

class DeviceStream : public std::enable_shared_from_this<DeviceStream> {
 public:
  using Post = std::function<void(std::function<void()>)>;  // onto the owner's thread
  using Emit = std::function<void(const std::shared_ptr<const Delivery>&)>;
  using Overflow = std::function<void()>;  // too much held: the owner should drop the device
  // True while the owner's send queue is too full to take a page read from the store: catch-up
  // then waits for resume() instead of pushing the device over its queue limit.
  using Backlogged = std::function<bool()>;

  static constexpr std::size_t kMaxHeld = 4096;  // deliveries held across all conversations
  static constexpr int64_t kFillPage = 200;      // messages per store read

  static std::shared_ptr<DeviceStream> create(Service& svc, Post post, Emit emit, Overflow overflow,
                                              Backlogged backlogged = nullptr);

  // Positions: where the device stands per conversation (max of acked and fetched cursors).
  // Last seqs: each of the user's conversations now; ranges between are caught up at once.
  // Floors: the last seqs read before the device was told it is connected; a conversation it has
  // no cursor for is streamed from there (or from its last seq, without a floor).
  void start(const SeqMap& positions, const SeqMap& last_seqs, const SeqMap& floors = {});
  void on_delivery(const std::shared_ptr<const Delivery>& d);
  // What the store holds now (after a bus outage): every conversation the stream knows catches
  // up to it.
  void catch_up(const SeqMap& last_seqs);
  // The device's user joined the conversation (or it was created with them) when it was at
  // `last_seq`: the stream goes on from there, filling from the store whatever the live path
  // lacks (in a cluster, messages can come before this node bound the conversation).
  void join(ConversationId c, Seq last_seq);
  // The device's user left (or was removed from) the conversation: forget it, so that a later
  // join starts where the conversation then is, not where this device left it.
  void leave(ConversationId c);
  // The device received up to `seq` by other means (a sync reply).
  void advance(ConversationId c, Seq seq);
  // The owner's queue drained: continue catch-ups that waited for it.
  void resume();
  void close();

 private:
  struct Conv {
    Seq pos = -1;          // last seq handed to the device; -1 = not known yet
    Seq target = 0;        // catch up at least to here
    bool filling = false;  // a store read is in flight
    std::map<Seq, std::shared_ptr<const Delivery>> held;
  };

  DeviceStream(Service& svc, Post post, Emit emit, Overflow overflow, Backlogged backlogged);
  void drain(ConversationId id, Conv& c);
  void fill(ConversationId id, Conv& c);
  void on_filled(ConversationId id, std::vector<Message> msgs, Seq asked_from);

  Service& svc_;
  Post post_;
  Emit emit_;
  Overflow overflow_;
  Backlogged backlogged_;
  std::vector<ConversationId> waiting_;  // catch-ups paused until resume()
  bool started_ = false;
  bool closed_ = false;
  std::size_t held_total_ = 0;
  std::unordered_map<ConversationId, Conv> convs_;
};

}  // namespace converge
