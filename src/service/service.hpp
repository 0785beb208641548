#pragma once
// The center of seed 000, transport-agnostic: auth, users, devices, conversations, membership,
// sending (validate -> assign seq -> store -> fan out), sync, notifications. Gateways (HTTP,
// WebSocket, MQTT, AMQP) call it; it knows nothing of their framing.
//
// Threads: the synchronous methods block (store reads, argon2id) and are meant to be called on the
// work pool (run_blocking). send() is asynchronous: it queues the message for the writer thread,
// which group-commits and then calls back (on the writer thread) and publishes to the bus.
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "base/crypto.hpp"
#include "base/error.hpp"
#include "base/metrics.hpp"
#include "base/rate_limit.hpp"
#include "bus/bus.hpp"
#include "model/model.hpp"
#include "model/requests.hpp"
#include "service/hub.hpp"
#include "service/presence.hpp"
#include "service/push.hpp"
#include "service/work_pool.hpp"
#include "store/store.hpp"

namespace converge {

class Writer;
class Cluster;
class PushWorker;
struct NodeInfo;

struct ServiceOptions {
  std::string files_dir;  // content-addressed blobs
  bool open_registration = true;
  PasswordHashCost password_cost = password_cost_interactive();
  int64_t token_ttl_ms = 30LL * 24 * 3600 * 1000;
  int64_t sync_page_max = 1000;
  int64_t sync_page_default = 100;
  int64_t sync_page_bytes = 1 << 20;  // a sync/offline page also stops after this many body bytes
  int64_t max_file_bytes = 25 << 20;
  int64_t store_batch_max = 1024;
  unsigned work_threads = 4;
  // Password hashing (login, registration, password change) has threads of its own, so that a
  // flood of logins never starves other calls; past auth_queue_max waiting, it refuses (429).
  unsigned auth_threads = 2;
  std::size_t auth_queue_max = 64;
  // Abuse limits (docs/configuration.md): N per S seconds, unlimited when empty.
  RateSpec rate_login_user = {10, 10.0 / 300};         // failed logins per user id
  RateSpec rate_login_address = {50, 50.0 / 300};      // failed logins per source address
  RateSpec rate_register_address = {60, 60.0 / 600};   // registrations per source address
  RateSpec rate_conversations_user = {30, 30.0 / 60};  // conversations created per user
  RateSpec rate_members_user = {300, 300.0 / 60};      // members added per user
  int64_t max_groups_per_user = 1000;                  // groups a user may be a member of
  int64_t max_group_members = 1000;                    // members one group may have
  int64_t request_ttl_ms = 7LL * 24 * 3600 * 1000;     // applications, invitations, friend requests
  RateSpec rate_requests_user = {30, 30.0 / 60};       // requests (of any kind) a user makes
  PushOptions push;  // offline push (service/push.hpp); off while push.post is empty
};

struct LoginResult {
  std::string token;
  AuthContext auth;
};

struct OpenedFile {
  FileMeta meta;
  std::string path;  // blob on disk
};

class Service {
 public:
  Service(ServiceOptions opts, Store& store, Bus& bus, Hub& hub, Metrics& metrics);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  Status start();  // opens sessions, starts the writer
  void stop();     // drains the writer, joins the work pool

  // Runs `fn` on the work pool.
  void run_blocking(std::function<void()> fn) { pool_.post(std::move(fn)); }
  // Runs `fn` on the password-hashing pool; false when its queue is full (answer 429).
  bool run_auth(std::function<void()> fn) {
    return auth_pool_.try_post(std::move(fn), opts_.auth_queue_max);
  }

  // --- accounts (blocking; the ones that hash passwords belong on run_auth) ---
  // User ids are folded to lower case here, whatever the gateway. `source` is the caller's
  // address (for per-address limits; empty when there is none, e.g. the command line).
  // `user_id` may be empty: one is generated. `by_admin` bypasses closed registration and the
  // registration limit.
  Result<User> register_user(std::string user_id, std::string name, const std::string& password,
                             bool by_admin, bool make_admin, const std::string& source = "");
  Result<LoginResult> login(const std::string& user_id, const std::string& password,
                            const std::string& device_id, const std::string& source = "");
  Result<AuthContext> authenticate(std::string_view token);
  // Whether the token with this digest is still valid (not revoked, not expired).
  bool token_alive(const std::string& token_hash);
  // Revokes the caller's token; its connections close (4001).
  Status logout(const AuthContext& who);
  // Revokes every token of the caller's user, the caller's own included; returns how many.
  Result<int64_t> logout_all(const AuthContext& who);
  // Checks the old password (throttled as a login), sets the new one and revokes every other
  // token of the user; returns how many.
  Result<int64_t> change_password(const AuthContext& who, const std::string& old_password,
                                  const std::string& new_password, const std::string& source);
  Result<std::vector<User>> list_users(const AuthContext& who);
  Result<User> find_user(const std::string& user_id);
  // Creates the user or resets its password, and makes it an admin (bootstrap).
  Status ensure_admin(const std::string& user_id, const std::string& password);

  // --- conversations (blocking) ---
  Result<std::vector<Conversation>> list_conversations(const AuthContext& who);
  // A page: ascending id after `after_id`, at most `limit` (1..sync_page_max).
  Result<std::vector<Conversation>> list_conversations_page(const AuthContext& who,
                                                            ConversationId after_id, int64_t limit);
  // second = true when created, false when an existing direct conversation was returned.
  Result<std::pair<Conversation, bool>> create_conversation(const AuthContext& who,
                                                            CreateConversationRequest req);
  Result<Conversation> get_conversation(const AuthContext& who, ConversationId id);
  Result<Conversation> add_members(const AuthContext& who, ConversationId id,
                                   const std::vector<std::string>& users);
  Result<Conversation> remove_member(const AuthContext& who, ConversationId id,
                                     const std::string& user_id);
  Status set_muted(const AuthContext& who, ConversationId id, bool muted);

  // --- groups: roles, settings, requests, friends (groups.cpp; DESIGN.md section 8) ---
  // Blocking. Every change is stored with a system message and announced to the members.
  struct GroupUpdate {
    std::optional<std::string> name;
    std::optional<std::string> notice;
    std::optional<JoinPolicy> join_policy;
  };
  Result<Conversation> update_group(const AuthContext& who, ConversationId id, GroupUpdate u);
  Result<Conversation> set_role(const AuthContext& who, ConversationId id,
                                const std::string& user_id, Role role);
  Result<Conversation> transfer_owner(const AuthContext& who, ConversationId id,
                                      const std::string& user_id);
  // What a non-member may see of a group (to apply to it).
  struct GroupSummary {
    ConversationId id = 0;
    std::string name;
    JoinPolicy join_policy = JoinPolicy::approval;
    int64_t member_count = 0;
    bool member = false;
  };
  Result<GroupSummary> group_summary(const AuthContext& who, ConversationId id);
  // A request and whether this call made it (false: an existing pending one, or, for an open
  // group's application, the join itself: status approved).
  struct RequestResult {
    Request request;
    bool created = false;
    std::optional<Conversation> conversation;  // friend request accepted: the direct one
  };
  Result<RequestResult> apply(const AuthContext& who, ConversationId id, std::string text);
  Result<RequestResult> invite(const AuthContext& who, ConversationId id,
                               const std::string& user_id, std::string text);
  Result<RequestResult> request_friend(const AuthContext& who, const std::string& user_id,
                                       std::string text);
  // approve: approve (applications) / accept (invitations, friend requests); else decline.
  // `kind` must match the request's (a request of another kind is not_found).
  Result<RequestResult> decide(const AuthContext& who, RequestKind kind, const std::string& id,
                               bool approve);
  // The pending request for this pair (MQTT's topics name pairs, not ids).
  Result<Request> pending_request(RequestKind kind, ConversationId id, const std::string& user_id,
                                  const std::string& from_id);
  // Pending applications: of one group (owner/admin), or (id 0) of every group the caller
  // administers and the caller's own.
  Result<std::vector<Request>> list_applications(const AuthContext& who, ConversationId id);
  Result<std::vector<Request>> list_invitations(const AuthContext& who);
  Result<std::vector<Request>> list_friend_requests(const AuthContext& who);
  struct FriendView {
    std::string user_id;
    std::string name;
    int64_t since_ms = 0;
  };
  Result<std::vector<FriendView>> list_friends(const AuthContext& who);
  Status remove_friend(const AuthContext& who, const std::string& user_id);
  Result<User> set_direct_policy(const AuthContext& who, DirectPolicy p);
  // The directory: users by id prefix or name; `limit` 1..100. second: more follow.
  Result<std::pair<std::vector<User>, bool>> search_users(const AuthContext& who,
                                                          const std::string& query,
                                                          const std::string& after, int64_t limit);
  // Marks expired requests (the node's housekeeping calls it now and then).
  Result<int64_t> expire_requests();
  // A system message of conversation `id` by `who` with this body (a JSON object's text).
  static Message system_message(const AuthContext& who, ConversationId id, std::string body);

  // --- messages ---
  // `done` runs after the commit: on hub shard `shard`'s thread, or (shard -1) on the writer's.
  void send(const AuthContext& who, SendRequest req, std::function<void(Result<SendAck>)> done,
            int shard = -1);
  // Ascending seq: after `after_seq`, or (before_seq > 0) the page just before `before_seq`.
  Result<std::vector<Message>> history(const AuthContext& who, ConversationId id, Seq after_seq,
                                       Seq before_seq, int64_t limit);
  // Offline messages: everything after the device's heartbeat seqs, paginated.
  Result<SyncPage> sync(const AuthContext& who, const SyncRequest& req);
  Result<SeqMap> heartbeat(const AuthContext& who, const SeqMap& seqs);
  // The acked cursors of a device moved by a front from what it delivered (seqs of messages the
  // device's own stream emitted, so neither checked against membership nor capped by a read):
  // one write, no read. A heartbeat from a client goes through heartbeat().
  Status advance_delivered(const AuthContext& who, const SeqMap& seqs);
  // Where a device's live stream starts: max(acked, fetched) per conversation it has a cursor for.
  Result<SeqMap> stream_positions(const AuthContext& who);
  // The conversation as the store has it (no membership check: for the node's own routing).
  Result<Conversation> conversation_members(ConversationId id);
  // Reads for gap filling (no membership check: the caller is a member's live stream).
  Result<std::vector<Message>> messages_after(ConversationId id, Seq after, int64_t limit);

  // --- files (blocking) ---
  Result<FileMeta> store_file(const AuthContext& who, std::string name, std::string mime,
                              std::string_view bytes);
  Result<OpenedFile> open_file(const AuthContext& who, const std::string& file_id);

  // --- notifications ---
  Status send_event(const AuthContext& who, const std::string& user_id, std::string payload_json);
  Status broadcast(const AuthContext& who, std::string payload_json);
  // Seed 000's configuration-change notifications for the backend services, validated:
  // `balance` (load balancer: to exchange_base, key "balance", queue_balance) or `media` (media
  // service: to exchange_comm_gb, key "comm_gb"). Fields are strings, as in the seed.
  // unavailable without a broker.
  Status backend_config(const AuthContext& who, const std::string& service,
                        const std::map<std::string, std::string>& fields);
  // Seed 000's admin clients: a notice to every admin's connections and queue_m_<uid>_* queues
  // (exchange_base, m_.<uid>), or to one admin (`only`). The node itself sends them for
  // user_registered, node_started and node_lost; an admin may send one (admin_notify).
  Status notify_admins(std::string payload_json, const std::string& only = "");
  Status admin_notify(const AuthContext& who, const std::string& to, std::string payload_json);
  // Seed 000's center_start, to the backend services (at start, once the bus is up).
  Status announce_start(const std::string& node_id);

  // --- devices of this node (for the bus's interest; set by the composition root) ---
  void set_cluster(Cluster* c) { cluster_ = c; }
  // A cheap read of the store: false when it cannot be reached (the cluster's heartbeat probes
  // it; /healthz reports it).
  bool probe_store();
  bool store_ok() const { return store_ok_.load(std::memory_order_relaxed); }

  // The nodes alive (this one included); just this one without a cluster.
  std::vector<NodeInfo> nodes() const;
  // A connection of `who`'s device (protocol "ws", "mqtt", ...) is attached here / is gone.
  // device_online blocks (store read, bus bindings): on the work pool, before reading the
  // device's positions. Its answer is what device_offline takes.
  int64_t device_online(const AuthContext& who, const std::string& protocol);
  void device_offline(const AuthContext& who, int64_t conn_id);

  // Presence: the connections of `users` on every node alive (in a cluster, as the store has
  // them; at most Presence's flush time behind), as `who` may see them: themselves and the
  // users they share a conversation with (others are left out); node, device and protocol
  // only for their own and for admins. At most kPresenceQueryMax users.
  static constexpr std::size_t kPresenceQueryMax = 100;
  struct UserPresence {
    std::string user_id;
    std::vector<PresenceRow> connections;  // empty: offline
    bool detailed = false;                 // connections carry node, device and protocol
  };
  Result<std::vector<UserPresence>> presence(const AuthContext& who,
                                             const std::vector<std::string>& users);
  // Which of `users` have a connection on a node alive (for the push path: no push to them).
  Result<std::set<std::string>> online_anywhere(std::span<const std::string> users);
  // The cluster's part: shares this node's connections through the store, and forgets those
  // of a node taken for dead (and takes over the pushes it had not sent).
  void share_presence() { presence_.start_sharing(store_); }
  void forget_node(const std::string& node_id);
  // Also told of a node taken for dead (on the work pool): voice rooms release its members.
  // Set before the cluster starts.
  void on_node_lost(std::function<void(const std::string&)> fn) { node_lost_ = std::move(fn); }

  // Offline push: pushes given up after push_retry_max tries, the newest first (admins only).
  Result<std::vector<PushRecord>> push_dead_letters(const AuthContext& who, int64_t limit);
  Presence& local_presence() { return presence_; }

  const ServiceOptions& options() const { return opts_; }
  Metrics& metrics() { return metrics_; }
  Hub& hub() { return hub_; }
  Bus& bus() { return bus_; }

 private:
  friend class PushWorker;  // reads through lease(), records through write()
  friend class Rooms;       // likewise
  class SessionLease;
  SessionLease lease();
  // Runs `fn` inside the writer's transaction and waits for the commit.
  Status write(std::function<Status(StoreSession&)> fn);
  // Tells the members (and `also`, e.g. a removed member) that a conversation changed.
  // `event_json`: the change's system message body, told with it.
  void announce(const Conversation& c, const char* change, const std::string& also = "",
                std::string event_json = "");
  Result<Conversation> load_member_view(StoreSession& s, const AuthContext& who, ConversationId id);
  // Inside a write: refuses when one of `users` is already in max_groups_per_user groups.
  Status check_group_cap(StoreSession& s, const std::vector<std::string>& users);
  Error limited(int64_t wait_ms, std::string what);  // counted 429
  // Groups (groups.cpp): a write through the writer that may store system messages.
  Status write_group(ConversationId id, std::function<Status(StoreSession&)> fn,
                     std::vector<Message>* system);
  // A request's push to each of `users` (WebSocket cmd and MQTT topics; every node).
  void announce_request(const Request& r, const std::vector<std::string>& users);
  Result<RequestResult> decide_locked(const AuthContext& who, Request r, bool approve);
  Result<Request> new_request(RequestKind kind, ConversationId id, const std::string& user_id,
                              const std::string& from_id, std::string text);
  void publish_revoke(const std::string& user_id, std::string token_hash, std::string keep_hash);
  // The connections of `users` on this node and on the other nodes alive (the store's rows).
  Result<std::vector<PresenceRow>> connections_of(std::span<const std::string> users,
                                                  StoreSession& s);

  ServiceOptions opts_;
  Store& store_;
  Bus& bus_;
  Hub& hub_;
  Metrics& metrics_;
  WorkPool pool_;
  WorkPool auth_pool_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<PushWorker> push_;
  Cluster* cluster_ = nullptr;
  std::function<void(const std::string&)> node_lost_;
  Presence presence_;
  std::atomic<bool> store_ok_{true};
  std::string dummy_hash_;  // verified for unknown users: they cost what known ones do
  RateLimiter login_user_limit_;
  RateLimiter login_address_limit_;
  RateLimiter register_address_limit_;
  RateLimiter conversations_limit_;
  RateLimiter members_limit_;
  RateLimiter requests_limit_;

  std::mutex sessions_mu_;  // guards idle reading sessions (not on the per-message path)
  std::vector<std::unique_ptr<StoreSession>> idle_sessions_;
};

// A reading store session borrowed from the idle list and given back when the lease ends.
class Service::SessionLease {
 public:
  SessionLease(Service* svc, std::unique_ptr<StoreSession> s) : svc_(svc), s_(std::move(s)) {}
  SessionLease(SessionLease&&) = default;
  ~SessionLease() {
    if (s_) {
      std::lock_guard lk(svc_->sessions_mu_);
      svc_->idle_sessions_.push_back(std::move(s_));
    }
  }
  StoreSession* operator->() { return s_.get(); }
  StoreSession& operator*() { return *s_; }

 private:
  Service* svc_;
  std::unique_ptr<StoreSession> s_;
};

}  // namespace converge
