#pragma once
// Offline push (seed 002's third-party reach; DESIGN.md section 8; docs/protocol.md, "Offline
// push"): a stored message reaches, through an operator's webhook, the members other than its
// publisher who have no device online on any node, unless they muted the conversation and are
// not mentioned.
//
// The send path never waits for it. The writer puts each stored message's key into the store's
// outbox in the message's own transaction (nothing is lost to a crash), and after the commit
// offers the message to this worker's bounded queue; a message that does not fit is counted
// (spilled) and read back from the store later. The worker, a thread of its own ("push"), takes
// up to batch_max messages after batch_ms, claims those still in its outbox, works out who gets
// a push (members now, mute, mentions), asks presence who is online anywhere, and POSTs the rest
// in batches, signed. A push a POST did not deliver waits in the store (pending) for its next
// try, after a backoff; after retry_max tries it is a dead letter. Each POST's outcome is
// recorded through the writer; every store row belongs to this node until another node adopts
// it (this one was taken for dead) or, single node, a later run of this one does.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/metrics.hpp"
#include "bus/bus.hpp"
#include "store/store.hpp"

namespace converge {

class Service;

// What one POST got: an HTTP status (2xx: delivered), or `error` when no status came (refused,
// reset, timed out).
struct PushResponse {
  int status = 0;
  std::string error;  // "timeout", "connect: ...", ...; empty when a status came
  bool delivered() const { return error.empty() && status >= 200 && status < 300; }
};

// Sends one POST: `body` (application/json) with `signature` as X-Converge-Signature. Blocks,
// bounded by its own timeout (client/webhook.hpp is the node's; tests bring their own).
using PushPost = std::function<PushResponse(const std::string& body, const std::string& signature)>;

struct PushOptions {
  PushPost post;                    // empty: push is off (no push_webhook_url)
  std::string secret;               // push_webhook_secret, the HMAC-SHA256 key
  int64_t retry_max = 6;            // tries in all, the first included; then a dead letter
  int64_t retry_base_ms = 1000;     // wait after the first failed try; doubled after each next one
  int64_t retry_cap_ms = 60000;     // longest wait between two tries
  std::size_t batch_max = 100;      // pushes per POST (and messages per pass)
  int64_t batch_ms = 50;            // how long a message waits for others to share its POST
  std::size_t queue_max = 10000;    // messages waiting in memory; more wait in the store only
  std::size_t preview_chars = 100;  // characters of the body in `preview`
  // No other node shares the store (the in-process bus): rows of any other owner are an
  // earlier run's of this node, adopted at start. In a cluster, rows of a node that is not
  // alive (by the heartbeats) are adopted once this node has been up node_timeout_ms.
  bool single_node = true;
  int64_t node_timeout_ms = 5000;
};

// --- the pure parts, for tests ---
// The body's first `max_chars` characters (code points; never a split one), control characters
// and bidirectional controls replaced by spaces: shown by a phone, not a terminal.
std::string push_preview(std::string_view body, std::size_t max_chars);
// One push object: {user_id, conversation_id, seq, publisher_id, publisher_name, type, preview,
// mentioned, ts}, serialized.
std::string push_payload(const Message& m, const std::string& user_id, bool mentioned,
                         std::size_t preview_chars);
// {"pushes":[payload, ...]}: the payloads are serialized objects of push_payload.
std::string push_body(std::span<const std::string> payloads);
// "sha256=" and the hex HMAC-SHA256 of `body` under `secret`.
std::string push_signature(std::string_view secret, std::string_view body);
// The wait before try attempts+1, after `attempts` failed tries (>= 1): retry_base_ms doubled
// (attempts - 1) times, capped, then "equal jitter": a uniform pick in [wait/2, wait].
int64_t push_backoff_ms(int64_t attempts, const PushOptions& o, double jitter01);

class PushWorker {
 public:
  PushWorker(PushOptions opts, Service& svc, Metrics& metrics);
  ~PushWorker();
  PushWorker(const PushWorker&) = delete;
  PushWorker& operator=(const PushWorker&) = delete;

  void start();
  // Ends after the POST under way (bounded by its timeout); what is queued stays in the store.
  void stop();
  // The writer thread, after a commit: the batch's stored messages. Never blocks; past
  // queue_max they are counted as spilled and read back from the outbox later.
  void enqueue(std::span<const std::shared_ptr<const Delivery>> stored);
  // Another node was taken for dead: its rows become this node's (any thread).
  void adopt(const std::string& node_id);

 private:
  // A message whose pushes are to be decided: from the queue, or read back from the outbox.
  struct Candidate {
    PushRef ref;
    std::shared_ptr<const Delivery> delivery;
  };
  // A push on its way: its record (as stored while pending) and where it came from.
  struct Attempt {
    PushRecord record;
    bool pending = false;  // a row of push_pending (a retry), not a first try
  };

  void run();  // the "push" thread
  // New messages: claim, decide, check presence, POST, record.
  void decide(std::vector<Candidate> batch);
  // Pending pushes that are due: one POST's worth.
  void retry_due();
  // Outbox rows that are not in the queue (spilled, adopted, a run before): one pass's worth.
  // False when the pass reached the end.
  bool scan_outbox();
  // Adopts the rows of dead owners (see PushOptions::single_node).
  void sweep_owners();
  void take_over(const std::string& node_id);
  // Drops the users online anywhere (counted); false when presence could not be read.
  bool drop_online(std::vector<Attempt>& attempts);
  // POSTs `attempts` in batches, then records every outcome and removes `done` from the outbox,
  // in one write. False when nothing could be recorded (presence or the store failed).
  bool post_and_record(std::vector<Attempt> attempts, const std::vector<PushRef>& done);
  // The outbox pass again, from its start, not before `delay_ms` (after a failure: not at once).
  void wake_scan(int64_t delay_ms);

  const PushOptions opts_;
  Service& svc_;
  Metrics& metrics_;
  const std::string node_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<const Delivery>> queue_;  // guarded by mu_
  int64_t first_queued_ms_ = 0;  // when the oldest queued message came (guarded by mu_)
  bool scan_ = true;             // the outbox has rows the queue has not (guarded by mu_)
  bool scan_restart_ = true;     // ... some of them before scan_after_ (guarded by mu_)
  int64_t scan_at_ms_ = 0;       // not before this (guarded by mu_)
  std::set<std::string> adopt_;  // nodes taken for dead (guarded by mu_)
  bool stopping_ = false;        // guarded by mu_
  std::thread thread_;

  // The push thread's own.
  PushRef scan_after_{};
  int64_t next_due_ms_ = 0;    // when the next pending push is due (0: look)
  int64_t next_sweep_ms_ = 0;  // when to look for dead owners' rows again
  int64_t started_ms_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace converge
