#pragma once
// The writer thread: owns the one writing store session and group-commits everything that writes.
// Jobs queue up while a batch commits; the next batch takes them all (up to batch_max) in one
// transaction, so the cost of a commit is shared and a send's ack waits for its batch, not for a
// commit of its own. Seqs are assigned here in queue order, which is also the order in which
// stored messages go to the bus.
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include "base/metrics.hpp"
#include "bus/bus.hpp"
#include "model/requests.hpp"
#include "service/hub.hpp"
#include "store/store.hpp"

namespace converge {

class PushWorker;

class Writer {
 public:
  struct SendJob {
    AuthContext who;
    SendRequest req;
    std::function<void(Result<SendAck>)> done;  // after commit: on `shard`'s thread, or here
    int shard = -1;  // the hub shard (network thread) to run `done` on; -1 = the writer thread
  };
  struct FnJob {
    std::function<Status(StoreSession&)> fn;  // runs under a savepoint inside the batch
    std::function<void(Status)> done;         // after commit (or with the failure)
    ConversationId invalidates = 0;           // membership cache entry to drop
    // System messages (a group's changes, DESIGN.md section 8) that `fn` appends here: once it
    // succeeded, each is numbered from its conversation's row lock, stored in the same
    // savepoint (a failure undoes `fn` too) and, after the commit, delivered like any message
    // to the members as they are then. Their seq and ts are set here. Owned by the submitter,
    // which waits for `done`.
    std::vector<Message>* system = nullptr;
  };

  // Completions of sends that name a shard are posted through `hub`, one post per shard per batch.
  Writer(std::unique_ptr<StoreSession> session, Bus& bus, Hub& hub, Metrics& metrics,
         int64_t batch_max);
  ~Writer();

  // Offline push (service/push.hpp), set before start: every stored message then gets its
  // outbox row in its own transaction, and after the commit goes to `push`'s queue.
  void set_push(PushWorker* push) { push_ = push; }
  void start();
  void stop();  // commits what is queued, then joins
  void submit(SendJob job);
  void submit(FnJob job);

 private:
  struct ConvInfo {
    std::shared_ptr<const MemberList> members;  // sorted
    int64_t members_version = 0;                // of the store, when `members` was read
    // Who may mention "all" (may_mention_all). The store bumps members_version when the owner
    // changes (a trigger), so the cached owner is as current as the cached members.
    std::string owner;
    std::vector<std::string> admins;  // sorted; role changes bump members_version too
  };
  // Mentions (model.hpp): each mentioned user a member; "all" for the owner and admins.
  static Status check_mentions(const std::vector<std::string>& mentions, const ConvInfo& info,
                               const AuthContext& who);
  // The owner and the group's admins may mention "all" (DESIGN.md section 8).
  static bool may_mention_all(const ConvInfo& info, const AuthContext& who);
  struct Done {
    std::function<void(Result<SendAck>)> send_done;
    int shard = -1;
    std::function<void(Status)> fn_done;
    std::optional<Result<SendAck>> send_result;
    Status fn_status = ok_status();
    std::shared_ptr<Delivery> delivery;             // published after commit
    std::vector<std::shared_ptr<Delivery>> system;  // a function job's system messages
  };
  // A function job's system messages, stored after it (FnJob::system).
  Status store_system(std::vector<Message>& msgs, std::vector<std::shared_ptr<Delivery>>& out);
  using Job = std::variant<SendJob, FnJob>;

  template <class J>
  void enqueue(J&& job);
  void run();
  void process(std::vector<Job>& batch);
  // The members, read again when the store's membership version (read under the row lock) is
  // not the cached one: another node may have changed them.
  Result<const ConvInfo*> conversation(ConversationId id, int64_t members_version);
  // The batch's view of a conversation's last seq: read (and locked) before the batch's first
  // message to it, stored back before commit (and before any function job runs).
  struct SeqSlot {
    Seq last = 0;
    int64_t members_version = 0;
    bool dirty = false;
    bool exists = true;  // false: looked up, no such conversation
  };
  // Locks, in one call and ascending, those of `ids` that have no slot yet.
  Status lock_slots(std::vector<ConversationId> ids);
  Status flush_seqs();

  // A send that passed its checks and waits for its seq.
  struct Pending {
    std::size_t done_index = 0;
    SendJob* job = nullptr;
    SeqSlot* slot = nullptr;
    std::shared_ptr<const MemberList> members;
    int64_t members_version = 0;
    std::optional<FileMeta> file;
  };
  // The sends batch[first, last), consecutive: each gets its Done at the end of `done`.
  void process_sends(std::vector<Job>& batch, std::size_t first, std::size_t last,
                     std::vector<Done>& done, const Status& begun);
  Result<Pending> check_send(SendJob& job, const Status& locked);
  void store_chunk(std::span<Pending> chunk, std::vector<Done>& done);
  // In-process stores: the chunk in one insert_messages, no savepoint (see store_chunk).
  void store_chunk_in_process(std::span<Pending> chunk, std::vector<Message>& msgs,
                              std::vector<std::string>& files, std::vector<Done>& done);
  // A message insert_messages left out: a retry's answer, or the slot-taken error.
  Result<SendAck> answer_refused(Message& m);
  // The one-by-one path: numbers `m` from its slot, inserts it, answers a retry.
  Result<SendAck> store_one(Pending& p, Message m, const std::string& file_id,
                            std::shared_ptr<Delivery>& out);
  Result<SendAck> stored(Pending& p, Message m, std::shared_ptr<Delivery>& out);

  std::unique_ptr<StoreSession> session_;
  Bus& bus_;
  Hub& hub_;
  Metrics& metrics_;
  const std::size_t batch_max_;
  PushWorker* push_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Job> queue_;
  bool stopping_ = false;
  std::thread thread_;

  // Writer thread only.
  // Set when the batch's transaction holds work that must not commit (an insert_messages that
  // failed after storing part of its rows, a gap that could not be closed).
  Status batch_failed_ = ok_status();
  std::unordered_map<ConversationId, ConvInfo> conv_cache_;
  std::unordered_map<ConversationId, SeqSlot> seqs_;
};

}  // namespace converge
