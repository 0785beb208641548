#pragma once
// The store interface. Engines (sqlite/, postgres/) implement it; only app names an engine.
// A StoreSession is one database connection: not thread-safe, owned by one thread at a time.
// The service's writer thread owns the one session that writes; reader threads own the others.
#include <compare>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "model/model.hpp"
#include "model/requests.hpp"

namespace converge {

struct UserRecord {
  User user;
  std::string password_hash;  // argon2id, libsodium string form
};

struct DeviceCursor {
  Seq acked = 0;    // from the device's heartbeats: what it has processed
  Seq fetched = 0;  // what offline/sync handed it (may be ahead of acked)
};

// What the writer reads of a conversation under its row lock. members_version counts membership
// changes (the store bumps it on every member added or removed, in the same transaction), so a
// writer on any node knows whether the members it cached are still the members.
struct ConversationLock {
  Seq last_seq = 0;
  int64_t members_version = 0;
  ConversationId id = 0;  // set by lock_conversations, which answers for several at once
};

// A conversation's new top, for set_last_seqs.
struct LastSeq {
  ConversationId id = 0;
  Seq seq = 0;
};

// What find_sent_many looks up: borrowed strings, which must outlive the call.
struct SentKey {
  std::string_view publisher_id;
  std::string_view client_msg_id;
};

struct SentRef {  // what an earlier send with the same client_msg_id produced
  ConversationId conversation_id = 0;
  Seq seq = 0;
  int64_t ts_ms = 0;
};

// --- Rows for copying a whole store (converge migrate): each table's rows as they are stored,
// nothing derived and nothing to be assigned again on the way in.
struct TokenRow {
  std::string hash;  // the token's digest (tokens are never stored in clear)
  std::string user_id;
  std::string device_id;
  int64_t expires_at_ms = 0;
};
struct ConversationRow {
  Conversation conversation;  // id, last_seq and members_version included; members not used
  std::string direct_key;     // the sorted pair of a direct conversation; empty for a group
};
struct MemberRow {
  ConversationId conversation_id = 0;
  std::string user_id;
  bool muted = false;
  int64_t joined_at_ms = 0;  // orders the members of get_conversation
  Role role = Role::member;  // admin or member (the owner is the conversation's)
};
struct FriendRow {  // one per pair, user_a < user_b
  std::string user_a;
  std::string user_b;
  int64_t since_ms = 0;
};
struct MessageRow {
  Message message;      // file not used: file_id names it
  std::string file_id;  // empty: no file
};
struct CursorRow {
  std::string user_id;
  std::string device_id;
  ConversationId conversation_id = 0;
  DeviceCursor cursor;
};

// A batch of rows. export_all hands over batches of one table each; import_rows takes any mix
// and stores the tables in the order of these fields, which is the order the references need.
// One connected device, as the cluster's presence keeps it (service/presence.hpp): a row per
// connection, owned by the node that holds it, which alone adds and drops its rows.
struct PresenceRow {
  std::string node_id;
  int64_t conn_id = 0;  // unique within the node (its incarnation's counter)
  std::string user_id;
  std::string device_id;
  std::string protocol;  // "ws", "mqtt", ...
  int64_t since_ms = 0;
};

// An MQTT session that outlives its connection (gateway/mqtt/session.hpp): the broker writes
// it behind, a node that serves the client id next reads it back. Only the session's identity,
// expiry and subscriptions are kept: IM messages come back from the device's cursors, not from
// a copy per session.
struct MqttSubRow {
  std::string filter;  // as subscribed ("$share/g/f" too)
  uint8_t qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  uint8_t retain_handling = 0;
  uint32_t subscription_id = 0;  // 0: none
};
struct MqttSessionRow {
  std::string client_id;
  std::string user_id;             // empty: an anonymous client's
  int64_t expiry_s = 0;            // after the connection ends
  int64_t disconnected_at_ms = 0;  // 0: connected, on node_id
  std::string node_id;             // the node that served it last
  std::vector<MqttSubRow> subs;    // by filter (mqtt_session_get); ignored by a write
};
// One session's changes since the last write: `erase` drops the row and its subscriptions;
// else `row` is put (replaced), then, after every subscription went when `reset_subs`, each
// of `subs` is put (a value) or dropped (none).
struct MqttSessionWrite {
  std::string client_id;
  bool erase = false;
  std::optional<MqttSessionRow> row;
  bool reset_subs = false;
  std::vector<std::pair<std::string, std::optional<MqttSubRow>>> subs;
};

// Offline push (service/push.hpp). A stored message whose pushes are not decided yet is a row
// of the outbox, written by the writer in the message's own transaction and owned by the node
// whose writer stored it; a push that failed a try waits as a pending row (owned likewise) for
// the next; one given up is a dead letter. Not part of a copy (converge migrate).
struct PushRef {
  ConversationId conversation_id = 0;
  Seq seq = 0;
  auto operator<=>(const PushRef&) const = default;
};
struct PushRecord {
  std::string user_id;  // who the push is for
  ConversationId conversation_id = 0;
  Seq seq = 0;
  std::string payload;     // the push object's JSON, as it is POSTed
  int64_t attempts = 0;    // tries so far
  int64_t at_ms = 0;       // pending: when the next try is due; dead: when it was given up
  std::string last_error;  // what the last try got ("HTTP 500", "timeout", ...)
};

struct StoreRows {
  std::vector<UserRecord> users;
  std::vector<TokenRow> tokens;
  std::vector<ConversationRow> conversations;
  std::vector<MemberRow> members;
  std::vector<FileMeta> files;
  std::vector<MessageRow> messages;
  std::vector<CursorRow> cursors;
  std::vector<Request> requests;  // applications, invitations, friend requests, any status
  std::vector<FriendRow> friends;
  std::vector<Room> rooms;  // member_count not used; next member numbers start over
  std::vector<std::pair<RoomId, std::string>> room_bans;  // removed users, kept out

  std::size_t size() const {
    return users.size() + tokens.size() + conversations.size() + members.size() + files.size() +
           messages.size() + cursors.size() + requests.size() + friends.size() + rooms.size() +
           room_bans.size();
  }
  void clear() {  // keeps the vectors' capacity for the next batch
    users.clear();
    tokens.clear();
    conversations.clear();
    members.clear();
    files.clear();
    messages.clear();
    cursors.clear();
    requests.clear();
    friends.clear();
    rooms.clear();
    room_bans.clear();
  }
};

// Rows per table.
struct StoreCounts {
  int64_t users = 0;
  int64_t tokens = 0;
  int64_t conversations = 0;
  int64_t members = 0;
  int64_t files = 0;
  int64_t messages = 0;
  int64_t cursors = 0;
  int64_t requests = 0;
  int64_t friends = 0;
  int64_t rooms = 0;
  int64_t room_bans = 0;

  void add(const StoreRows& r) {
    users += static_cast<int64_t>(r.users.size());
    tokens += static_cast<int64_t>(r.tokens.size());
    conversations += static_cast<int64_t>(r.conversations.size());
    members += static_cast<int64_t>(r.members.size());
    files += static_cast<int64_t>(r.files.size());
    messages += static_cast<int64_t>(r.messages.size());
    cursors += static_cast<int64_t>(r.cursors.size());
    requests += static_cast<int64_t>(r.requests.size());
    friends += static_cast<int64_t>(r.friends.size());
    rooms += static_cast<int64_t>(r.rooms.size());
    room_bans += static_cast<int64_t>(r.room_bans.size());
  }
  int64_t total() const {
    return users + tokens + conversations + members + files + messages + cursors + requests +
           friends + rooms + room_bans;
  }
  // {table name, rows}, in StoreRows's order: for reports.
  std::vector<std::pair<std::string, int64_t>> by_table() const {
    return {{"users", users},     {"tokens", tokens},      {"conversations", conversations},
            {"members", members}, {"files", files},        {"messages", messages},
            {"cursors", cursors}, {"requests", requests},  {"friends", friends},
            {"rooms", rooms},     {"room_bans", room_bans}};
  }
  bool operator==(const StoreCounts&) const = default;
};

// Where export_all hands its batches. An error stops the export and is its result.
class StoreRowSink {
 public:
  virtual ~StoreRowSink() = default;
  virtual Status write(const StoreRows& batch) = 0;
};

// How big export_all's batches grow: a batch ends at whichever limit comes first, so a store of
// millions of messages is never in memory at once, however long its messages are.
struct BatchLimits {
  std::size_t max_rows = 5000;
  std::size_t max_bytes = 8u << 20;  // of text (bodies, names, hashes), roughly
};

class StoreSession {
 public:
  virtual ~StoreSession() = default;

  // Called by the writer between transactions: housekeeping that needs no transaction open
  // (SQLite: finishing a WAL checkpoint so that the WAL starts over). True when it did some.
  virtual bool maintain() { return false; }

  virtual Status begin() = 0;
  virtual Status commit() = 0;
  virtual void rollback() = 0;
  // Nested undo points inside a transaction, so one failed job does not undo a batch.
  virtual Status savepoint() = 0;
  virtual Status release_savepoint() = 0;
  virtual void rollback_to_savepoint() = 0;

  // Users and tokens
  virtual Status create_user(const User& u, const std::string& password_hash) = 0;  // conflict
  virtual Result<std::optional<UserRecord>> find_user(const std::string& id) = 0;
  virtual Result<std::vector<User>> list_users(int64_t limit) = 0;
  virtual Status set_admin(const std::string& id, bool admin) = 0;
  virtual Result<std::vector<User>> list_admins() = 0;  // by id
  virtual Status set_password(const std::string& id, const std::string& password_hash) = 0;
  virtual Status insert_token(const std::string& token_hash, const std::string& user_id,
                              const std::string& device_id, int64_t expires_at_ms) = 0;
  // Joined with the user; expired tokens are not found.
  virtual Result<std::optional<AuthContext>> find_token(const std::string& token_hash,
                                                        int64_t now_ms) = 0;
  virtual Status delete_token(const std::string& token_hash) = 0;
  // Deletes every token of the user except `keep_hash` (empty: all of them); returns how many.
  virtual Result<int64_t> delete_user_tokens(const std::string& user_id,
                                             const std::string& keep_hash) = 0;
  virtual Status delete_expired_tokens(int64_t now_ms) = 0;

  // Conversations
  // Inserts the conversation and its members; returns the new id. A direct conversation carries
  // `direct_key` (the sorted pair), unique: a second insert of the same pair is a conflict.
  virtual Result<ConversationId> create_conversation(const Conversation& c,
                                                     const std::string& direct_key) = 0;
  virtual Result<std::optional<ConversationId>> find_direct(const std::string& direct_key) = 0;
  virtual Result<std::optional<Conversation>> get_conversation(ConversationId id) = 0;
  virtual Result<std::vector<Conversation>> list_conversations(const std::string& user_id) = 0;
  // A page of them: ascending id, id > after_id, at most `limit`.
  virtual Result<std::vector<Conversation>> list_conversations_page(const std::string& user_id,
                                                                    ConversationId after_id,
                                                                    int64_t limit) = 0;
  // How many groups (not direct conversations) the user is a member of.
  virtual Result<int64_t> count_groups(const std::string& user_id) = 0;
  virtual Status add_member(ConversationId id, const std::string& user_id, int64_t now_ms) = 0;
  virtual Status remove_member(ConversationId id, const std::string& user_id) = 0;
  virtual Status set_muted(ConversationId id, const std::string& user_id, bool muted) = 0;
  // The owner moves to `user_id` (a member), whose role row becomes `member` (the owner's role
  // is the conversation's owner, not a row's); bumps members_version like a membership change.
  virtual Status set_owner(ConversationId id, const std::string& user_id) = 0;

  // Groups (DESIGN.md section 8). Each field that has a value is set; bumps members_version
  // (so that a writer's cached view, which carries the roles, is read again).
  virtual Status update_conversation(ConversationId id, const std::optional<std::string>& name,
                                     const std::optional<std::string>& notice,
                                     std::optional<JoinPolicy> join_policy) = 0;
  // A member's role: admin or member (never owner: set_owner). Bumps members_version.
  // not_found when the user is not a member.
  virtual Status set_role(ConversationId id, const std::string& user_id, Role role) = 0;
  // Members of a conversation (count(*)): for the member limit.
  virtual Result<int64_t> count_members(ConversationId id) = 0;

  // Users: the directory. Users whose id starts with `query` or whose name contains it (ASCII
  // case folded; empty query: everyone), ascending id, id > after_id, at most `limit`.
  virtual Result<std::vector<User>> search_users(const std::string& query,
                                                 const std::string& after_id, int64_t limit) = 0;
  virtual Status set_direct_policy(const std::string& user_id, DirectPolicy p) = 0;

  // Requests: applications, invitations, friend requests (model.hpp). A request counts as
  // pending while its status is pending and now_ms < expires_at_ms.
  virtual Status request_insert(const Request& r) = 0;  // conflict: the id exists
  virtual Result<std::optional<Request>> request_get(const std::string& id) = 0;
  // The pending request of this kind, conversation (0 for friend requests), user and from_id.
  virtual Result<std::optional<Request>> request_find_pending(RequestKind kind,
                                                              ConversationId conversation_id,
                                                              const std::string& user_id,
                                                              const std::string& from_id,
                                                              int64_t now_ms) = 0;
  // Decides a request that is still pending at now_ms: status, decided_by, decided_at_ms =
  // now_ms, and conversation_id when `conversation_id` is not 0 (a friend request's direct
  // conversation). True when this call decided it; false when it was decided (or expired)
  // already: then nothing changes.
  virtual Result<bool> request_decide(const std::string& id, RequestStatus status,
                                      const std::string& decided_by, int64_t now_ms,
                                      ConversationId conversation_id) = 0;
  // Pending requests of `kind`: about `user_id` (user_id = it) or, with `or_from`, also made by
  // it (from_id = it); the newest first, at most `limit`.
  virtual Result<std::vector<Request>> requests_of_user(RequestKind kind,
                                                        const std::string& user_id, bool or_from,
                                                        int64_t now_ms, int64_t limit) = 0;
  // Pending requests of `kind` for a group; the newest first, at most `limit`.
  virtual Result<std::vector<Request>> requests_of_conversation(RequestKind kind,
                                                                ConversationId conversation_id,
                                                                int64_t now_ms, int64_t limit) = 0;
  // Pending requests whose expires_at_ms <= now_ms become `expired`; returns how many.
  virtual Result<int64_t> requests_expire(int64_t now_ms) = 0;

  // Friends: symmetric, one row per pair (the store orders the pair).
  virtual Status add_friend(const std::string& a, const std::string& b, int64_t now_ms) = 0;
  virtual Status remove_friend(const std::string& a, const std::string& b) = 0;  // none: ok
  virtual Result<bool> are_friends(const std::string& a, const std::string& b) = 0;
  virtual Result<std::vector<Friend>> list_friends(const std::string& user_id) = 0;  // by id

  // Messages
  virtual Result<std::optional<SentRef>> find_sent(const std::string& publisher_id,
                                                   const std::string& client_msg_id) = 0;
  // Seqs are assigned inside a write transaction: lock_conversation reads the conversation's
  // last_seq (and members_version) and holds it (the row lock of engines that several nodes share)
  // until the transaction ends; the writer numbers the batch's messages from it and stores the new
  // top with set_last_seq before committing. Gapless across nodes: the lock serializes them.
  virtual Result<ConversationLock> lock_conversation(ConversationId id) = 0;  // not_found
  Result<Seq> lock_last_seq(ConversationId id) {
    auto l = lock_conversation(id);
    if (!l) return l.error();
    return l->last_seq;
  }
  virtual Status set_last_seq(ConversationId id, Seq seq) = 0;
  // Stores the message unless the publisher already stored one with the same client_msg_id:
  // then nothing is written and the result is false (find_sent tells what it was).
  virtual Result<bool> insert_message(const Message& m, const std::string& file_id) = 0;

  // The batched forms of the calls above, for the writer: one statement for a whole batch where
  // the engine pays a round trip per statement (PostgreSQL). The defaults loop over the single
  // calls, which is what an in-process engine (SQLite) does anyway.
  //
  // Whether a statement costs a round trip to a server (PostgreSQL), rather than a call into
  // the process (SQLite): the writer then looks retries up before inserting, in one call,
  // instead of letting each insert find its own retry.
  virtual bool statements_round_trip() const { return false; }
  //
  // Locks (as lock_conversation) the conversations of `sorted_ids` (ascending, no repeats: the
  // order in which every writer takes its row locks, so that none deadlocks) and answers those
  // that exist, ascending by id; a missing id is simply absent from the answer.
  virtual Result<std::vector<ConversationLock>> lock_conversations(
      std::span<const ConversationId> sorted_ids);
  // As set_last_seq for each; not_found when one of them does not exist.
  virtual Status set_last_seqs(std::span<const LastSeq> seqs);
  // As find_sent for each key, in the keys' order.
  virtual Result<std::vector<std::optional<SentRef>>> find_sent_many(std::span<const SentKey> keys);
  // As insert_message for each (file_ids[i] goes with msgs[i]; the two spans are as long; no two
  // messages with the same conversation and seq), in
  // order: answer i is false when msgs[i] was not stored because its (publisher, client_msg_id)
  // is stored already (by an earlier send, or by an earlier message of the same call) or its
  // (conversation, seq) is taken. An error stores none of them (on PostgreSQL one statement
  // carries them all: its failure leaves the transaction aborted, as any failed statement does;
  // the default may have stored some): a caller that goes on puts a savepoint around it.
  virtual Result<std::vector<bool>> insert_messages(std::span<const Message> msgs,
                                                    std::span<const std::string> file_ids);
  // Gives the message at (id, from) the seq `to`, which must be free: not_found when there is
  // no such message, an error when `to` is taken. The writer closes the gap a retry left in a
  // run of messages stored by one insert_messages (service/writer.cpp).
  virtual Status move_message(ConversationId id, Seq from, Seq to) = 0;

  // seq > after_seq, ascending, at most `limit`, file metadata joined.
  virtual Result<std::vector<Message>> messages_after(ConversationId id, Seq after_seq,
                                                      int64_t limit) = 0;
  // The `limit` messages just before `before_seq`, ascending (paging upward through history).
  virtual Result<std::vector<Message>> messages_before(ConversationId id, Seq before_seq,
                                                       int64_t limit) = 0;

  // Device cursors; both only move forward.
  virtual Status advance_acked(const std::string& user_id, const std::string& device_id,
                               ConversationId id, Seq seq) = 0;
  virtual Status advance_fetched(const std::string& user_id, const std::string& device_id,
                                 ConversationId id, Seq seq) = 0;
  virtual Result<std::vector<std::pair<ConversationId, DeviceCursor>>> cursors(
      const std::string& user_id, const std::string& device_id) = 0;

  // Files
  virtual Status insert_file(const FileMeta& f) = 0;
  virtual Result<std::optional<FileMeta>> get_file(const std::string& id) = 0;
  // True when the user uploaded it or is a member of a conversation it was sent in.
  virtual Result<bool> file_accessible(const std::string& file_id, const std::string& user_id) = 0;

  // Those of `others` who are in a conversation with `user` (each once, any order).
  virtual Result<std::vector<std::string>> shared_members(const std::string& user,
                                                          std::span<const std::string> others) = 0;

  // Presence (cluster). Rows are keyed by (node_id, conn_id); put replaces a row with the same
  // key. Not part of a copy (converge migrate): they describe connections, not data.
  virtual Status presence_put(std::span<const PresenceRow> rows) = 0;
  virtual Status presence_drop(const std::string& node_id, std::span<const int64_t> conn_ids) = 0;
  virtual Status presence_clear(const std::string& node_id) = 0;  // every row of that node
  // Every row of these users (ids as stored), by user then node then connection.
  virtual Result<std::vector<PresenceRow>> presence_of(std::span<const std::string> user_ids) = 0;

  // MQTT sessions. Not part of a copy (converge migrate): like presence, they describe
  // connections; a device's cursors, which are copied, carry what it has received.
  virtual Status mqtt_sessions_write(std::span<const MqttSessionWrite> writes) = 0;
  virtual Result<std::optional<MqttSessionRow>> mqtt_session_get(const std::string& client_id) = 0;
  // The sessions `node_id` (empty: any node) served when it stopped count as disconnected at
  // `now_ms`.
  virtual Status mqtt_sessions_release(const std::string& node_id, int64_t now_ms) = 0;
  // Drops the sessions whose expiry ran out by `now_ms` (disconnected_at + expiry); how many.
  virtual Result<int64_t> mqtt_sessions_expire(int64_t now_ms) = 0;

  // Push (service/push.hpp): the outbox, pending pushes and dead letters. Rows of the outbox
  // and pending pushes carry their owner, the node that alone works on them (`node`).
  //
  // The outbox: one row per stored message whose pushes are undecided (its key is unique).
  virtual Status push_outbox_add(const std::string& node, std::span<const PushRef> refs,
                                 int64_t now_ms) = 0;
  // Those of `refs` that are in the outbox and owned by `node`, ascending.
  virtual Result<std::vector<PushRef>> push_outbox_owned(const std::string& node,
                                                         std::span<const PushRef> refs) = 0;
  // The outbox rows of `node` after `after`, ascending, at most `limit`.
  virtual Result<std::vector<PushRef>> push_outbox_list(const std::string& node, PushRef after,
                                                        int64_t limit) = 0;
  // Removes those of `refs` owned by `node`; returns how many.
  virtual Result<int64_t> push_outbox_remove(const std::string& node,
                                             std::span<const PushRef> refs) = 0;
  // Pending pushes, keyed by (user_id, conversation_id, seq): put inserts or replaces (the
  // owner becomes `node`), remove deletes those owned by `node`. No key twice in one call.
  virtual Status push_pending_put(const std::string& node, std::span<const PushRecord> records) = 0;
  virtual Status push_pending_remove(const std::string& node, std::span<const PushRecord> keys) = 0;
  // `node`'s pending pushes due at `now_ms` (at_ms <= now), the earliest first, at most `limit`.
  virtual Result<std::vector<PushRecord>> push_pending_due(const std::string& node, int64_t now_ms,
                                                           int64_t limit) = 0;
  // When `node`'s next pending push is due; none when it has none.
  virtual Result<std::optional<int64_t>> push_pending_next(const std::string& node) = 0;
  // Dead letters: put inserts or replaces (no key twice in one call); list gives the newest
  // first, at most `limit`.
  virtual Status push_dead_put(std::span<const PushRecord> records) = 0;
  virtual Result<std::vector<PushRecord>> push_dead_list(int64_t limit) = 0;
  // Every node owning outbox or pending rows, by id.
  virtual Result<std::vector<std::string>> push_owners() = 0;
  // Hands every outbox and pending row of `from` to `to` (a node taken for dead), in one
  // statement per table: of several nodes doing it at once, one gets the rows. Returns how many.
  virtual Result<int64_t> push_adopt(const std::string& from, const std::string& to) = 0;

  // Voice rooms (DESIGN.md section 7). Rooms are data (part of a copy); members are connections
  // (like presence: not copied), owned by the node holding the connection.
  // A new room: its id is assigned (a positive integer below 2^32) and returned.
  virtual Result<RoomId> room_create(const Room& r) = 0;
  // member_count filled in.
  virtual Result<std::optional<Room>> room_get(RoomId id) = 0;
  // By id, member counts filled in; id > after_id, at most `limit`.
  virtual Result<std::vector<Room>> rooms_list(RoomId after_id, int64_t limit) = 0;
  // The room, its members and its removed list.
  virtual Status room_delete(RoomId id) = 0;
  // Under the room's row lock (the same on every node): a user removed from the room is
  // refused (forbidden); a user who is a member already (another connection, or back after a
  // node's loss) has their row moved to this node and connection, keeping member_no and muted;
  // else past max_members it is room_full; else a new row with the room's next member_no (each
  // room counts its own from 1; numbers are never given twice in a room). The row as it is now;
  // `fresh` says whether it is a new member (false: moved). not_found: no such room.
  struct RoomJoin {
    RoomMember member;
    bool fresh = true;
  };
  virtual Result<RoomJoin> room_join(RoomId id, const std::string& user_id,
                                     const std::string& node_id, int64_t conn_id,
                                     int64_t now_ms) = 0;
  // Removes the member if their row is still this node's and connection's (a newer connection
  // took it over otherwise); the row removed, if any.
  virtual Result<std::optional<RoomMember>> room_leave(RoomId id, const std::string& user_id,
                                                       const std::string& node_id,
                                                       int64_t conn_id) = 0;
  // The owner's removal: the member's row goes (whatever its connection) and the user may not
  // join again; the row removed, if any. Also for a user not in the room (banned ahead).
  virtual Result<std::optional<RoomMember>> room_remove(RoomId id, const std::string& user_id) = 0;
  // not_found when the user is not a member.
  virtual Status room_set_muted(RoomId id, const std::string& user_id, bool muted) = 0;
  virtual Result<std::vector<RoomMember>> room_members(RoomId id) = 0;  // by member_no
  // Every member row of `node_id` (a node that stopped, or was taken for dead) goes; the rows
  // removed. Of several nodes doing it at once, each row goes to one of them (one statement).
  virtual Result<std::vector<RoomMember>> room_leave_node(const std::string& node_id) = 0;
  // Every member row of every node (a sole node's start: none of them is connected).
  virtual Status room_members_clear() = 0;

  // Copying a whole store, engine to engine (converge migrate; store/copy.hpp drives these).
  // Rows travel as they are stored: user ids, password hashes, token digests, conversation ids,
  // seqs, last_seq, members_version, client_msg_ids. Nothing is assigned again.
  //
  // Every row of every table into `sink`, in batches of one table each (see BatchLimits), the
  // tables in StoreRows's order and each in primary-key order. Called outside a transaction: it
  // runs its own read-only one, a consistent snapshot. SQLite holds the database's write lock
  // meanwhile, so nothing is written behind the copy's back.
  virtual Status export_all(StoreRowSink& sink, const BatchLimits& limits) = 0;
  // Stores the rows as they are, inside a transaction the caller opened with begin() (a copy
  // commits once: all or nothing). A row that exists already fails (conflict): it is meant for
  // an empty store. Between the first import_rows and import_finish, call nothing else on the
  // session but import_rows (PostgreSQL keeps a table's COPY open across batches).
  virtual Status import_rows(const StoreRows& rows) = 0;
  // After the last import_rows, in the same transaction: the conversation id generator moves
  // past the highest id imported, so that the next conversation created gets a new one.
  virtual Status import_finish() = 0;
  // Rows per table (count(*): as long as a scan of the tables).
  virtual Result<StoreCounts> count_rows() = 0;
};

inline Result<std::vector<ConversationLock>> StoreSession::lock_conversations(
    std::span<const ConversationId> sorted_ids) {
  std::vector<ConversationLock> out;
  out.reserve(sorted_ids.size());
  for (auto id : sorted_ids) {
    auto l = lock_conversation(id);
    if (!l) {
      if (l.error().code == Errc::not_found) continue;
      return l.error();
    }
    l->id = id;
    out.push_back(*l);
  }
  return out;
}

inline Status StoreSession::set_last_seqs(std::span<const LastSeq> seqs) {
  for (auto& s : seqs)
    if (auto st = set_last_seq(s.id, s.seq); !st) return st;
  return ok_status();
}

inline Result<std::vector<std::optional<SentRef>>> StoreSession::find_sent_many(
    std::span<const SentKey> keys) {
  std::vector<std::optional<SentRef>> out;
  out.reserve(keys.size());
  for (auto& k : keys) {
    auto r = find_sent(std::string(k.publisher_id), std::string(k.client_msg_id));
    if (!r) return r.error();
    out.push_back(std::move(r.value()));
  }
  return out;
}

inline Result<std::vector<bool>> StoreSession::insert_messages(
    std::span<const Message> msgs, std::span<const std::string> file_ids) {
  if (msgs.size() != file_ids.size())
    return make_error(Errc::internal, "insert_messages: as many file ids as messages");
  std::vector<bool> out;
  out.reserve(msgs.size());
  for (std::size_t i = 0; i < msgs.size(); ++i) {
    auto r = insert_message(msgs[i], file_ids[i]);
    if (!r) return r.error();
    out.push_back(r.value());
  }
  return out;
}

class Store {
 public:
  virtual ~Store() = default;
  virtual std::string engine_name() const = 0;
  // A new connection. Migrations have run by the time the Store exists.
  virtual Result<std::unique_ptr<StoreSession>> open_session() = 0;
};

}  // namespace converge
