#include "store/sqlite/sqlite_store.hpp"
#include "base/process.hpp"
#include "store/sql_text.hpp"
#include "store/sqlite/wal_vfs.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace converge {

namespace {

// Schema version 1. Later versions append statements to kMigrations; user_version says where
// a database stands.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  is_admin INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE TABLE tokens (
  hash TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  device_id TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX tokens_expiry ON tokens(expires_at);
CREATE TABLE conversations (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  owner TEXT NOT NULL,
  direct_key TEXT UNIQUE,
  last_seq INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE TABLE members (
  conversation_id INTEGER NOT NULL REFERENCES conversations(id),
  user_id TEXT NOT NULL REFERENCES users(id),
  muted INTEGER NOT NULL DEFAULT 0,
  joined_at INTEGER NOT NULL,
  PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id, conversation_id);
CREATE TABLE files (
  id TEXT PRIMARY KEY,
  sha256 TEXT NOT NULL,
  name TEXT NOT NULL,
  mime TEXT NOT NULL,
  size INTEGER NOT NULL,
  uploader TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE messages (
  conversation_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  publisher_id TEXT NOT NULL,
  publisher_name TEXT NOT NULL,
  type TEXT NOT NULL,
  body TEXT NOT NULL,
  client_msg_id TEXT,
  file_id TEXT,
  ts INTEGER NOT NULL,
  PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX messages_dedupe ON messages(publisher_id, client_msg_id)
  WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_by_file ON messages(file_id) WHERE file_id IS NOT NULL;
CREATE TABLE cursors (
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  conversation_id INTEGER NOT NULL,
  acked INTEGER NOT NULL DEFAULT 0,
  fetched INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, device_id, conversation_id)
) WITHOUT ROWID;
)sql",
    // Version 2: user ids are compared without ASCII case (model.hpp). Ids stored with upper
    // case letters are folded to lower case everywhere they appear, unless the folded id is
    // taken (then the account keeps its old id; docs/operations.md says so).
    R"sql(
PRAGMA defer_foreign_keys = ON;
CREATE TEMP TABLE fold AS SELECT id AS old, lower(id) AS new FROM users u
  WHERE id <> lower(id)
    AND (SELECT count(*) FROM users w WHERE lower(w.id) = lower(u.id)) = 1;
UPDATE users SET id = (SELECT new FROM fold WHERE old = users.id)
  WHERE id IN (SELECT old FROM fold);
UPDATE tokens SET user_id = (SELECT new FROM fold WHERE old = tokens.user_id)
  WHERE user_id IN (SELECT old FROM fold);
UPDATE members SET user_id = (SELECT new FROM fold WHERE old = members.user_id)
  WHERE user_id IN (SELECT old FROM fold);
UPDATE conversations SET owner = (SELECT new FROM fold WHERE old = conversations.owner)
  WHERE owner IN (SELECT old FROM fold);
UPDATE messages SET publisher_id = (SELECT new FROM fold WHERE old = messages.publisher_id)
  WHERE publisher_id IN (SELECT old FROM fold);
UPDATE files SET uploader = (SELECT new FROM fold WHERE old = files.uploader)
  WHERE uploader IN (SELECT old FROM fold);
UPDATE cursors SET user_id = (SELECT new FROM fold WHERE old = cursors.user_id)
  WHERE user_id IN (SELECT old FROM fold);
CREATE TEMP TABLE pairs AS SELECT id,
  coalesce((SELECT new FROM fold WHERE old = substr(direct_key, 1, instr(direct_key, '|') - 1)),
           substr(direct_key, 1, instr(direct_key, '|') - 1)) AS a,
  coalesce((SELECT new FROM fold WHERE old = substr(direct_key, instr(direct_key, '|') + 1)),
           substr(direct_key, instr(direct_key, '|') + 1)) AS b
  FROM conversations WHERE direct_key IS NOT NULL AND direct_key <> lower(direct_key);
UPDATE conversations SET direct_key = (SELECT CASE WHEN a < b THEN a || '|' || b
                                                   ELSE b || '|' || a END
                                       FROM pairs WHERE pairs.id = conversations.id)
  WHERE id IN (SELECT id FROM pairs);
DROP TABLE pairs;
DROP TABLE fold;
)sql",
    // Version 3: the membership version (store.hpp, ConversationLock), kept by triggers so that
    // every path that changes members bumps it in the same transaction.
    R"sql(
ALTER TABLE conversations ADD COLUMN members_version INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER members_version_added AFTER INSERT ON members BEGIN
  UPDATE conversations SET members_version = members_version + 1 WHERE id = NEW.conversation_id;
END;
CREATE TRIGGER members_version_removed AFTER DELETE ON members BEGIN
  UPDATE conversations SET members_version = members_version + 1 WHERE id = OLD.conversation_id;
END;
)sql",
    // Version 4: presence (store.hpp, PresenceRow). A single node keeps it in memory; the table
    // is here so that both engines answer the same calls.
    R"sql(
CREATE TABLE presence (
  node_id TEXT NOT NULL,
  conn_id INTEGER NOT NULL,
  user_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  protocol TEXT NOT NULL,
  since INTEGER NOT NULL,
  PRIMARY KEY (node_id, conn_id)
) WITHOUT ROWID;
CREATE INDEX presence_by_user ON presence(user_id);
)sql",
    // Version 5: MQTT sessions that outlive their connection (store.hpp, MqttSessionRow).
    R"sql(
CREATE TABLE mqtt_sessions (
  client_id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  expiry_s INTEGER NOT NULL,
  disconnected_at INTEGER NOT NULL,
  node_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE mqtt_subscriptions (
  client_id TEXT NOT NULL,
  filter TEXT NOT NULL,
  qos INTEGER NOT NULL,
  no_local INTEGER NOT NULL,
  retain_as_published INTEGER NOT NULL,
  retain_handling INTEGER NOT NULL,
  subscription_id INTEGER NOT NULL,
  PRIMARY KEY (client_id, filter)
) WITHOUT ROWID;
)sql",
    // Version 6 (issue 13): mentions and offline push (store.hpp, PushRef and PushRecord;
    // service/push.hpp). An owner change bumps members_version as a membership change does: the
    // writer caches the owner with the members (who may mention "all").
    R"sql(
ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '';
CREATE TRIGGER owner_version AFTER UPDATE OF owner ON conversations
  WHEN OLD.owner IS NOT NEW.owner BEGIN
  UPDATE conversations SET members_version = members_version + 1 WHERE id = NEW.id;
END;
CREATE TABLE push_outbox (
  conversation_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  node_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;
CREATE INDEX push_outbox_by_node ON push_outbox(node_id, conversation_id, seq);
CREATE TABLE push_pending (
  user_id TEXT NOT NULL,
  conversation_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  node_id TEXT NOT NULL,
  payload TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  next_at INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  PRIMARY KEY (user_id, conversation_id, seq)
) WITHOUT ROWID;
CREATE INDEX push_pending_due ON push_pending(node_id, next_at);
CREATE TABLE push_dead (
  user_id TEXT NOT NULL,
  conversation_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  payload TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  dead_at INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  PRIMARY KEY (user_id, conversation_id, seq)
) WITHOUT ROWID;
CREATE INDEX push_dead_by_time ON push_dead(dead_at);
)sql",
    // Version 7 (issue 13): groups (DESIGN.md section 8): roles, a group's notice and join
    // policy, a user's direct policy; requests (applications, invitations, friend requests) and
    // friends. A role or a group's settings changing bumps members_version, as a membership or
    // owner change does (the writer caches them with the members), by triggers again so that
    // every path that changes them bumps it. The owner's role is the conversation's `owner`,
    // never a row's. A friendship is one row, the pair in byte order. Requests are kept in
    // every status; the indexes hold the pending ones only, each in the order its list reads
    // them (newest first; WITHOUT ROWID appends the id to every index): requests_pending for
    // request_find_pending, by_user, by_from and by_conversation for the lists, expiry for
    // requests_expire.
    R"sql(
ALTER TABLE members ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
ALTER TABLE conversations ADD COLUMN notice TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN join_policy TEXT NOT NULL DEFAULT 'approval';
ALTER TABLE users ADD COLUMN direct_policy TEXT NOT NULL DEFAULT 'anyone';
CREATE TRIGGER role_version AFTER UPDATE OF role ON members
  WHEN OLD.role IS NOT NEW.role BEGIN
  UPDATE conversations SET members_version = members_version + 1 WHERE id = NEW.conversation_id;
END;
CREATE TRIGGER settings_version AFTER UPDATE OF name, notice, join_policy ON conversations
  WHEN OLD.name IS NOT NEW.name OR OLD.notice IS NOT NEW.notice
    OR OLD.join_policy IS NOT NEW.join_policy BEGIN
  UPDATE conversations SET members_version = members_version + 1 WHERE id = NEW.id;
END;
CREATE TABLE requests (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  conversation_id INTEGER NOT NULL,
  user_id TEXT NOT NULL REFERENCES users(id),
  from_id TEXT NOT NULL REFERENCES users(id),
  text TEXT NOT NULL,
  status TEXT NOT NULL,
  decided_by TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  decided_at_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX requests_pending
  ON requests(user_id, from_id, kind, conversation_id, created_at_ms) WHERE status = 'pending';
CREATE INDEX requests_by_user ON requests(user_id, kind, created_at_ms)
  WHERE status = 'pending';
CREATE INDEX requests_by_from ON requests(from_id, kind, created_at_ms)
  WHERE status = 'pending';
CREATE INDEX requests_by_conversation ON requests(conversation_id, kind, created_at_ms)
  WHERE status = 'pending';
CREATE INDEX requests_expiry ON requests(expires_at_ms) WHERE status = 'pending';
CREATE TABLE friends (
  user_a TEXT NOT NULL REFERENCES users(id),
  user_b TEXT NOT NULL REFERENCES users(id),
  since_ms INTEGER NOT NULL,
  PRIMARY KEY (user_a, user_b),
  CHECK (user_a < user_b)
) WITHOUT ROWID;
CREATE INDEX friends_by_b ON friends(user_b, user_a);
)sql",
    // Version 8 (issue 15): voice rooms (DESIGN.md section 7). A room's id travels as a u32 in
    // audio frames: AUTOINCREMENT from 1, never reused, and CHECKed below 2^32 (an imported id
    // too). A member is a connection (node_id, conn_id), like presence; member_no comes from
    // the room's next_member_no, which only grows, so a number is never given twice in a room
    // (the UNIQUE says so as well). room_bans holds the users an owner removed. Members and bans
    // go with their room (ON DELETE CASCADE: foreign_keys is on in every session);
    // room_members_by_node serves room_leave_node.
    R"sql(
CREATE TABLE rooms (
  id INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id BETWEEN 1 AND 4294967295),
  name TEXT NOT NULL,
  owner TEXT NOT NULL REFERENCES users(id),
  max_members INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL,
  next_member_no INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE room_members (
  room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES users(id),
  member_no INTEGER NOT NULL,
  muted INTEGER NOT NULL DEFAULT 0,
  node_id TEXT NOT NULL,
  conn_id INTEGER NOT NULL,
  joined_at_ms INTEGER NOT NULL,
  PRIMARY KEY (room_id, user_id),
  UNIQUE (room_id, member_no)
) WITHOUT ROWID;
CREATE INDEX room_members_by_node ON room_members(node_id);
CREATE TABLE room_bans (
  room_id INTEGER NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
  user_id TEXT NOT NULL REFERENCES users(id),
  PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
)sql",
    // Version 9 (issue 14): messages_dedupe leads with client_msg_id. Under (publisher_id,
    // client_msg_id) every sender's messages went into a range of their own, so a batch of
    // sends dirtied a page per sender at least (a page per message for random ids), each one
    // a WAL frame to write and copy back; time-ordered ids (what the SDK sends: the clock's
    // milliseconds first) now all go to the index's end, as the messages' seqs go to their
    // conversations' ends. A retry's lookup names both columns, which either order serves.
    R"sql(
DROP INDEX messages_dedupe;
CREATE UNIQUE INDEX messages_dedupe ON messages(client_msg_id, publisher_id)
  WHERE client_msg_id IS NOT NULL;
)sql",
};

// A request's columns, in request_row's order; the statements that read requests. Each reads
// pending requests through one of the partial indexes of version 7, in the index's order:
// `+expires_at_ms` keeps the planner, which has no statistics, off requests_expiry (a range over
// every pending request of everyone), which it would otherwise prefer.
constexpr const char* kRequestSelect =
    "SELECT id, kind, conversation_id, user_id, from_id, text, status, decided_by, created_at_ms, "
    "decided_at_ms, expires_at_ms FROM requests ";
const std::string kRequestGet = std::string(kRequestSelect) + "WHERE id = ?1";
const std::string kRequestFind =
    std::string(kRequestSelect) +
    "WHERE user_id = ?3 AND from_id = ?4 AND kind = ?1 AND conversation_id = ?2 AND "
    "status = 'pending' AND +expires_at_ms > ?5 ORDER BY created_at_ms DESC, id DESC LIMIT 1";
const std::string kRequestsOfUser =
    std::string(kRequestSelect) +
    "WHERE user_id = ?2 AND kind = ?1 AND status = 'pending' AND +expires_at_ms > ?3 "
    "ORDER BY created_at_ms DESC, id DESC LIMIT ?4";
// About the user or made by them: the newest `limit` of each index, merged (UNION: an
// application is both the applicant's and made by them, and is listed once). An OR would scan.
const std::string kRequestsOfUserOrFrom =
    "SELECT * FROM (" + kRequestsOfUser + ") UNION SELECT * FROM (" + std::string(kRequestSelect) +
    "WHERE from_id = ?2 AND kind = ?1 AND status = 'pending' AND +expires_at_ms > ?3 "
    "ORDER BY created_at_ms DESC, id DESC LIMIT ?4) ORDER BY created_at_ms DESC, id DESC LIMIT ?4";
const std::string kRequestsOfConversation =
    std::string(kRequestSelect) +
    "WHERE conversation_id = ?2 AND kind = ?1 AND status = 'pending' AND +expires_at_ms > ?3 "
    "ORDER BY created_at_ms DESC, id DESC LIMIT ?4";

// A room's columns, in room_row's order, with its member count (a probe of room_members'
// primary key per room read, in the same statement); a member row's, in room_member_row's.
constexpr const char* kRoomSelect =
    "SELECT r.id, r.name, r.owner, r.max_members, r.created_at_ms, "
    "(SELECT count(*) FROM room_members m WHERE m.room_id = r.id) FROM rooms r ";
constexpr const char* kRoomMemberColumns =
    "room_id, user_id, member_no, muted, node_id, conn_id, joined_at_ms";

Error db_error(sqlite3* db, const char* what) {
  return make_error(Errc::internal, std::string(what) + ": " + sqlite3_errmsg(db));
}

// What the sessions and the checkpointer thread share about the WAL. Checkpoints copy committed
// pages from the WAL into the database file. SQLite runs them in the committing connection by
// default, which put 25-250 ms stalls into the writer's commits (and every ack of that batch);
// a RESTART checkpoint from another connection stalled it as long, waiting in busy handlers.
//
// So the checkpointer thread copies in the background (PASSIVE: never blocks the writer), woken
// every wake_frames of WAL. The WAL can only start over when a transaction begins with every
// frame copied, which under steady load never happens by itself: commits go on during each copy.
// Past reset_frames (32 MiB by default) the checkpointer pauses 10 ms after each pass: if what
// is left (what was committed during that pass) is under finish_frames, the writer, between two
// transactions, copies those few on its own connection (no lock to wait for; a short stall,
// mostly two fsyncs) and its next BEGIN restarts the WAL at frame 0; if not, the checkpointer
// copies again. Should the checkpointer fall behind the writer, the writer waits for its pass
// to end past twice reset_frames and finishes the copy itself: the WAL stays bounded.
struct WalState {
  int reset_frames = 0;            // SqliteOptions::wal_reset_frames
  int wake_frames = 0;             // reset_frames / 2
  int finish_frames = 0;           // reset_frames / 16
  std::atomic<int> frames{0};      // frames in the WAL after the last commit
  std::atomic<int> backfilled{0};  // frames copied by the checkpointer's last pass
  std::atomic<bool> checkpointing{false};
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<int> woken_at{0};  // frames when the checkpointer was last woken
  bool stopping = false;

  std::condition_variable pass_done;  // a checkpointer pass ended (checkpointing went false)

  // The writer's part, between transactions: is the rest small enough (or the WAL too big)?
  // Past twice reset_frames it waits for the checkpointer's pass to end and then finishes.
  bool writer_should_finish() {
    int f = frames.load(std::memory_order_relaxed);
    if (f <= reset_frames) return false;
    if (f > 2 * reset_frames) {
      std::unique_lock lk(mu);
      pass_done.wait(lk, [this] { return !checkpointing.load(); });
      return true;
    }
    return !checkpointing.load() && f - backfilled.load() <= finish_frames;
  }
};

class SqliteSession final : public StoreSession {
 public:
  SqliteSession(sqlite3* db, WalState* wal) : db_(db), wal_(wal) {}

  // Installs the WAL hook, which replaces SQLite's auto-checkpointing: commits report the WAL's
  // size here instead of checkpointing. Call it after any PRAGMA wal_autocheckpoint (that pragma
  // installs a hook of its own).
  void watch_wal() { sqlite3_wal_hook(db_, &SqliteSession::on_wal_commit, this); }
  ~SqliteSession() override {
    for (auto& [_, s] : cache_) sqlite3_finalize(s);
    for (auto* s : insert_rows_) sqlite3_finalize(s);
    sqlite3_close_v2(db_);
  }

  Status exec(const char* sql) { return exec_with(sql, nullptr, nullptr); }

  Status exec_with(const char* sql, int (*cb)(void*, int, char**, char**), void* arg) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, cb, arg, &err) != SQLITE_OK) {
      std::string m = err ? err : "unknown";
      sqlite3_free(err);
      return make_error(Errc::internal, m);
    }
    return ok_status();
  }

  // {frames in the WAL, frames copied into the database}; {-1, -1} on failure.
  std::pair<int, int> wal_checkpoint(int mode) {
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, mode, &log, &done);
    return rc == SQLITE_OK ? std::pair{log, done} : std::pair{-1, -1};
  }

  // fsyncs the database file, as a checkpoint that copied everything would. Called by the
  // checkpointer after each pass, so the writer's own finishing checkpoint (which must fsync
  // before the WAL starts over) has only the last few pages to wait for.
  void sync_database() {
    sqlite3_file* f = nullptr;
    if (sqlite3_file_control(db_, "main", SQLITE_FCNTL_FILE_POINTER, &f) == SQLITE_OK && f &&
        f->pMethods)
      (void)f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
  }

  bool maintain() override {
    if (!wal_ || !wal_->writer_should_finish()) return false;
    auto [log, done] = wal_checkpoint(SQLITE_CHECKPOINT_PASSIVE);
    if (log >= 0 && log == done) {  // the next BEGIN restarts the WAL
      wal_->frames.store(0);
      wal_->backfilled.store(0);
    }
    return true;
  }

  Status begin() override { return exec("BEGIN IMMEDIATE"); }
  Status commit() override { return exec("COMMIT"); }
  void rollback() override { (void)exec("ROLLBACK"); }
  // Prepared once: a savepoint per job is on the per-message path.
  Status savepoint() override { return done(prepare("SAVEPOINT job"), "savepoint"); }
  Status release_savepoint() override { return done(prepare("RELEASE job"), "release"); }
  void rollback_to_savepoint() override {
    (void)done(prepare("ROLLBACK TO job"), "rollback to");
    (void)done(prepare("RELEASE job"), "release");
  }

  // --- users and tokens ---
  Status create_user(const User& u, const std::string& hash) override {
    auto* s = prepare(
        "INSERT INTO users(id, name, password_hash, is_admin, created_at, direct_policy) "
        "VALUES(?1,?2,?3,?4,?5,?6)");
    bind(s, 1, u.id);
    bind(s, 2, u.name);
    bind(s, 3, hash);
    sqlite3_bind_int(s, 4, u.is_admin ? 1 : 0);
    sqlite3_bind_int64(s, 5, u.created_at_ms);
    bind_static(s, 6, direct_policy_name(u.direct_policy));
    int rc = step_done(s);
    if (rc == SQLITE_CONSTRAINT) return make_error(Errc::conflict, "user id already taken");
    if (rc != SQLITE_DONE) return db_error(db_, "create_user");
    return ok_status();
  }

  Result<std::optional<UserRecord>> find_user(const std::string& id) override {
    auto* s = prepare(
        "SELECT id, name, password_hash, is_admin, created_at, direct_policy FROM users WHERE id = "
        "?1");
    bind(s, 1, id);
    std::optional<UserRecord> out;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      UserRecord r;
      r.user = user_row(s);
      r.password_hash = col(s, 2);
      out = std::move(r);
      rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "find_user");
    return out;
  }

  Result<std::vector<User>> list_admins() override {
    return users_of(
        prepare("SELECT id, name, password_hash, is_admin, created_at, direct_policy FROM users "
                "WHERE is_admin <> 0 ORDER BY id"),
        "list_admins");
  }

  Result<std::vector<User>> list_users(int64_t limit) override {
    auto* s = prepare(
        "SELECT id, name, password_hash, is_admin, created_at, direct_policy FROM users ORDER BY "
        "id LIMIT ?1");
    sqlite3_bind_int64(s, 1, limit);
    return users_of(s, "list_users");
  }

  // Every row of a users query with its parameters bound.
  Result<std::vector<User>> users_of(sqlite3_stmt* s, const char* what) {
    std::vector<User> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(user_row(s));
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, what);
    return out;
  }

  Status set_admin(const std::string& id, bool admin) override {
    auto* s = prepare("UPDATE users SET is_admin = ?2 WHERE id = ?1");
    bind(s, 1, id);
    sqlite3_bind_int(s, 2, admin ? 1 : 0);
    return done_changed(s, "set_admin", "no such user");
  }

  // The directory: a scan in id order from after_id, which stops at `limit` matches.
  Result<std::vector<User>> search_users(const std::string& query, const std::string& after_id,
                                         int64_t limit) override {
    auto* s = prepare(
        "SELECT id, name, password_hash, is_admin, created_at, direct_policy FROM users "
        "WHERE id > ?2 AND (lower(id) LIKE ?1 || '%' ESCAPE '\\' "
        "OR lower(name) LIKE '%' || ?1 || '%' ESCAPE '\\') ORDER BY id LIMIT ?3");
    const std::string operand = store_text::like_operand(query);
    bind_static(s, 1, operand);
    bind_static(s, 2, after_id);
    sqlite3_bind_int64(s, 3, limit);
    return users_of(s, "search_users");
  }

  Status set_direct_policy(const std::string& id, DirectPolicy p) override {
    auto* s = prepare("UPDATE users SET direct_policy = ?2 WHERE id = ?1");
    bind(s, 1, id);
    bind_static(s, 2, direct_policy_name(p));
    return done_changed(s, "set_direct_policy", "no such user");
  }

  Status set_password(const std::string& id, const std::string& hash) override {
    auto* s = prepare("UPDATE users SET password_hash = ?2 WHERE id = ?1");
    bind(s, 1, id);
    bind(s, 2, hash);
    return done_changed(s, "set_password", "no such user");
  }

  Status insert_token(const std::string& hash, const std::string& user_id,
                      const std::string& device_id, int64_t expires_at_ms) override {
    auto* s =
        prepare("INSERT INTO tokens(hash, user_id, device_id, expires_at) VALUES(?1,?2,?3,?4)");
    bind(s, 1, hash);
    bind(s, 2, user_id);
    bind(s, 3, device_id);
    sqlite3_bind_int64(s, 4, expires_at_ms);
    return done(s, "insert_token");
  }

  Result<std::optional<AuthContext>> find_token(const std::string& hash, int64_t now) override {
    auto* s = prepare(
        "SELECT t.user_id, u.name, t.device_id, u.is_admin, t.expires_at FROM tokens t "
        "JOIN users u ON u.id = t.user_id WHERE t.hash = ?1 AND t.expires_at > ?2");
    bind(s, 1, hash);
    sqlite3_bind_int64(s, 2, now);
    std::optional<AuthContext> out;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      AuthContext a;
      a.user_id = col(s, 0);
      a.user_name = col(s, 1);
      a.device_id = col(s, 2);
      a.is_admin = sqlite3_column_int(s, 3) != 0;
      a.expires_at_ms = sqlite3_column_int64(s, 4);
      out = std::move(a);
      rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "find_token");
    return out;
  }

  Status delete_token(const std::string& hash) override {
    auto* s = prepare("DELETE FROM tokens WHERE hash = ?1");
    bind(s, 1, hash);
    return done(s, "delete_token");
  }

  Result<int64_t> delete_user_tokens(const std::string& user_id,
                                     const std::string& keep_hash) override {
    auto* s = prepare("DELETE FROM tokens WHERE user_id = ?1 AND hash <> ?2");
    bind(s, 1, user_id);
    bind(s, 2, keep_hash);
    if (auto st = done(s, "delete_user_tokens"); !st) return st.error();
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  Status delete_expired_tokens(int64_t now) override {
    auto* s = prepare("DELETE FROM tokens WHERE expires_at <= ?1");
    sqlite3_bind_int64(s, 1, now);
    return done(s, "delete_expired_tokens");
  }

  // --- conversations ---
  Result<ConversationId> create_conversation(const Conversation& c,
                                             const std::string& direct_key) override {
    auto* s = prepare(
        "INSERT INTO conversations(type, name, owner, direct_key, last_seq, created_at, notice, "
        "join_policy) VALUES(?1,?2,?3,?4,0,?5,?6,?7)");
    bind(s, 1, std::string(conversation_type_name(c.type)));
    bind(s, 2, c.name);
    bind(s, 3, c.owner);
    if (direct_key.empty())
      sqlite3_bind_null(s, 4);
    else
      bind(s, 4, direct_key);
    sqlite3_bind_int64(s, 5, c.created_at_ms);
    bind(s, 6, c.notice);
    bind_static(s, 7, join_policy_name(c.join_policy));
    int rc = step_done(s);
    if (rc == SQLITE_CONSTRAINT) return make_error(Errc::conflict, "direct conversation exists");
    if (rc != SQLITE_DONE) return db_error(db_, "create_conversation");
    ConversationId id = sqlite3_last_insert_rowid(db_);
    for (auto& m : c.members)
      if (auto st = insert_member(id, m.user_id, c.created_at_ms, m.role); !st) return st.error();
    return id;
  }

  Result<std::optional<ConversationId>> find_direct(const std::string& key) override {
    auto* s = prepare("SELECT id FROM conversations WHERE direct_key = ?1");
    bind(s, 1, key);
    std::optional<ConversationId> out;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      out = sqlite3_column_int64(s, 0);
      rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "find_direct");
    return out;
  }

  Result<std::optional<Conversation>> get_conversation(ConversationId id) override {
    auto* s = prepare(
        "SELECT id, type, name, owner, last_seq, created_at, notice, join_policy, members_version "
        "FROM conversations WHERE id = ?1");
    sqlite3_bind_int64(s, 1, id);
    std::optional<Conversation> out;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      out = conversation_row(s);
      out->members_version = sqlite3_column_int64(s, 8);
      rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "get_conversation");
    if (out) {
      auto m = members(id, out->owner);
      if (!m) return m.error();
      out->members = std::move(m.value());
    }
    return out;
  }

  Result<std::vector<Conversation>> list_conversations(const std::string& user_id) override {
    auto* s = prepare(
        "SELECT c.id, c.type, c.name, c.owner, c.last_seq, c.created_at, c.notice, "
        "c.join_policy FROM members m "
        "JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = ?1 ORDER BY c.id");
    bind(s, 1, user_id);
    std::vector<Conversation> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(conversation_row(s));
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "list_conversations");
    for (auto& c : out) {
      auto m = members(c.id, c.owner);
      if (!m) return m.error();
      c.members = std::move(m.value());
    }
    return out;
  }

  Result<std::vector<Conversation>> list_conversations_page(const std::string& user_id,
                                                            ConversationId after_id,
                                                            int64_t limit) override {
    auto* s = prepare(
        "SELECT c.id, c.type, c.name, c.owner, c.last_seq, c.created_at, c.notice, "
        "c.join_policy FROM members m "
        "JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = ?1 "
        "AND m.conversation_id > ?2 ORDER BY m.conversation_id LIMIT ?3");
    bind(s, 1, user_id);
    sqlite3_bind_int64(s, 2, after_id);
    sqlite3_bind_int64(s, 3, limit);
    std::vector<Conversation> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(conversation_row(s));
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "list_conversations_page");
    for (auto& c : out) {
      auto m = members(c.id, c.owner);
      if (!m) return m.error();
      c.members = std::move(m.value());
    }
    return out;
  }

  Result<int64_t> count_groups(const std::string& user_id) override {
    auto* s = prepare(
        "SELECT count(*) FROM members m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.user_id = ?1 AND c.type = 'group'");
    bind(s, 1, user_id);
    int rc = sqlite3_step(s);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) return db_error(db_, "count_groups");
    return n;
  }

  Status add_member(ConversationId id, const std::string& user_id, int64_t now) override {
    return insert_member(id, user_id, now, Role::member);
  }

  // A member with a role (create_conversation's members carry theirs); one already in stays
  // as it is.
  Status insert_member(ConversationId id, const std::string& user_id, int64_t now, Role role) {
    auto* s = prepare(
        "INSERT INTO members(conversation_id, user_id, muted, joined_at, role) "
        "VALUES(?1,?2,0,?3,?4) ON CONFLICT DO NOTHING");
    sqlite3_bind_int64(s, 1, id);
    bind(s, 2, user_id);
    sqlite3_bind_int64(s, 3, now);
    bind_static(s, 4, store_text::row_role_name(role));
    return done(s, "add_member");
  }

  Status remove_member(ConversationId id, const std::string& user_id) override {
    auto* s = prepare("DELETE FROM members WHERE conversation_id = ?1 AND user_id = ?2");
    sqlite3_bind_int64(s, 1, id);
    bind(s, 2, user_id);
    return done_changed(s, "remove_member", "not a member");
  }

  Status set_muted(ConversationId id, const std::string& user_id, bool muted) override {
    auto* s = prepare("UPDATE members SET muted = ?3 WHERE conversation_id = ?1 AND user_id = ?2");
    sqlite3_bind_int64(s, 1, id);
    bind(s, 2, user_id);
    sqlite3_bind_int(s, 3, muted ? 1 : 0);
    return done_changed(s, "set_muted", "not a member");
  }

  // The owner_version trigger bumps members_version when the owner changes, role_version when
  // the new owner's row was an admin's.
  Status set_owner(ConversationId id, const std::string& user_id) override {
    auto* s = prepare("UPDATE conversations SET owner = ?2 WHERE id = ?1");
    sqlite3_bind_int64(s, 1, id);
    bind(s, 2, user_id);
    if (auto st = done_changed(s, "set_owner", "no such conversation"); !st) return st;
    s = prepare(
        "UPDATE members SET role = 'member' WHERE conversation_id = ?1 AND user_id = ?2 "
        "AND role <> 'member'");
    sqlite3_bind_int64(s, 1, id);
    bind(s, 2, user_id);
    return done(s, "set_owner");
  }

  // --- groups (DESIGN.md section 8) ---
  // The settings_version trigger bumps members_version when a value changes.
  Status update_conversation(ConversationId id, const std::optional<std::string>& name,
                             const std::optional<std::string>& notice,
                             std::optional<JoinPolicy> join_policy) override {
    auto* s = prepare(
        "UPDATE conversations SET name = coalesce(?2, name), notice = coalesce(?3, notice), "
        "join_policy = coalesce(?4, join_policy) WHERE id = ?1");
    sqlite3_bind_int64(s, 1, id);
    if (name)
      bind(s, 2, *name);
    else
      sqlite3_bind_null(s, 2);
    if (notice)
      bind(s, 3, *notice);
    else
      sqlite3_bind_null(s, 3);
    if (join_policy)
      bind_static(s, 4, join_policy_name(*join_policy));
    else
      sqlite3_bind_null(s, 4);
    return done_changed(s, "update_conversation", "no such conversation");
  }

  // The role_version trigger bumps members_version when the role changes.
  Status set_role(ConversationId id, const std::string& user_id, Role role) override {
    if (role == Role::owner) return make_error(Errc::bad_request, "set_role: owner is set_owner");
    auto* s = prepare("UPDATE members SET role = ?3 WHERE conversation_id = ?1 AND user_id = ?2");
    sqlite3_bind_int64(s, 1, id);
    bind(s, 2, user_id);
    bind_static(s, 3, role_name(role));
    return done_changed(s, "set_role", "not a member");
  }

  Result<int64_t> count_members(ConversationId id) override {
    auto* s = prepare("SELECT count(*) FROM members WHERE conversation_id = ?1");
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) return db_error(db_, "count_members");
    return n;
  }

  // --- requests ---
  Status request_insert(const Request& r) override {
    auto* s = prepare(
        "INSERT INTO requests(id, kind, conversation_id, user_id, from_id, text, status, "
        "decided_by, created_at_ms, decided_at_ms, expires_at_ms) "
        "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)");
    bind_request(s, r);
    int rc = sqlite3_step(s);
    const int ext = sqlite3_extended_errcode(db_);
    sqlite3_reset(s);
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY) return make_error(Errc::not_found, "no such user");
    if ((rc & 0xff) == SQLITE_CONSTRAINT) return make_error(Errc::conflict, "request id taken");
    if (rc != SQLITE_DONE) return db_error(db_, "request_insert");
    return ok_status();
  }

  Result<std::optional<Request>> request_get(const std::string& id) override {
    auto* s = prepare(kRequestGet.c_str());
    bind(s, 1, id);
    auto rows = request_rows(s, "request_get");
    if (!rows) return rows.error();
    if (rows->empty()) return std::optional<Request>();
    return std::optional<Request>(std::move(rows->front()));
  }

  Result<std::optional<Request>> request_find_pending(RequestKind kind,
                                                      ConversationId conversation_id,
                                                      const std::string& user_id,
                                                      const std::string& from_id,
                                                      int64_t now) override {
    auto* s = prepare(kRequestFind.c_str());
    bind_static(s, 1, request_kind_name(kind));
    sqlite3_bind_int64(s, 2, conversation_id);
    bind_static(s, 3, user_id);
    bind_static(s, 4, from_id);
    sqlite3_bind_int64(s, 5, now);
    auto rows = request_rows(s, "request_find_pending");
    if (!rows) return rows.error();
    if (rows->empty()) return std::optional<Request>();
    return std::optional<Request>(std::move(rows->front()));
  }

  // One conditional UPDATE: of two decisions (on any node) one changes the row, the other
  // finds it decided and changes nothing.
  Result<bool> request_decide(const std::string& id, RequestStatus status,
                              const std::string& decided_by, int64_t now,
                              ConversationId conversation_id) override {
    if (status == RequestStatus::pending)
      return make_error(Errc::bad_request, "request_decide: pending is not a decision");
    auto* s = prepare(
        "UPDATE requests SET status = ?2, decided_by = ?3, decided_at_ms = ?4, "
        "conversation_id = CASE WHEN ?5 <> 0 THEN ?5 ELSE conversation_id END "
        "WHERE id = ?1 AND status = 'pending' AND expires_at_ms > ?4");
    bind_static(s, 1, id);
    bind_static(s, 2, request_status_name(status));
    bind_static(s, 3, decided_by);
    sqlite3_bind_int64(s, 4, now);
    sqlite3_bind_int64(s, 5, conversation_id);
    if (auto st = done(s, "request_decide"); !st) return st.error();
    return sqlite3_changes(db_) == 1;
  }

  Result<std::vector<Request>> requests_of_user(RequestKind kind, const std::string& user_id,
                                                bool or_from, int64_t now, int64_t limit) override {
    auto* s = or_from ? prepare(kRequestsOfUserOrFrom.c_str()) : prepare(kRequestsOfUser.c_str());
    bind_static(s, 1, request_kind_name(kind));
    bind_static(s, 2, user_id);
    sqlite3_bind_int64(s, 3, now);
    sqlite3_bind_int64(s, 4, limit);
    return request_rows(s, "requests_of_user");
  }

  Result<std::vector<Request>> requests_of_conversation(RequestKind kind,
                                                        ConversationId conversation_id, int64_t now,
                                                        int64_t limit) override {
    auto* s = prepare(kRequestsOfConversation.c_str());
    bind_static(s, 1, request_kind_name(kind));
    sqlite3_bind_int64(s, 2, conversation_id);
    sqlite3_bind_int64(s, 3, now);
    sqlite3_bind_int64(s, 4, limit);
    return request_rows(s, "requests_of_conversation");
  }

  Result<int64_t> requests_expire(int64_t now) override {
    auto* s = prepare(
        "UPDATE requests SET status = 'expired' WHERE status = 'pending' AND expires_at_ms <= ?1");
    sqlite3_bind_int64(s, 1, now);
    if (auto st = done(s, "requests_expire"); !st) return st.error();
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  // --- friends: one row per pair, (user_a, user_b) in byte order ---
  Status add_friend(const std::string& a, const std::string& b, int64_t now) override {
    if (a == b) return make_error(Errc::bad_request, "add_friend: a user is not their own friend");
    auto [lo, hi] = store_text::friend_pair(a, b);
    auto* s = prepare(
        "INSERT INTO friends(user_a, user_b, since_ms) VALUES(?1,?2,?3) ON CONFLICT DO NOTHING");
    bind_static(s, 1, lo);
    bind_static(s, 2, hi);
    sqlite3_bind_int64(s, 3, now);
    int rc = sqlite3_step(s);
    const int ext = sqlite3_extended_errcode(db_);
    sqlite3_reset(s);
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY) return make_error(Errc::not_found, "no such user");
    if (rc != SQLITE_DONE) return db_error(db_, "add_friend");
    return ok_status();
  }

  Status remove_friend(const std::string& a, const std::string& b) override {
    auto [lo, hi] = store_text::friend_pair(a, b);
    auto* s = prepare("DELETE FROM friends WHERE user_a = ?1 AND user_b = ?2");
    bind_static(s, 1, lo);
    bind_static(s, 2, hi);
    return done(s, "remove_friend");
  }

  Result<bool> are_friends(const std::string& a, const std::string& b) override {
    auto [lo, hi] = store_text::friend_pair(a, b);
    auto* s = prepare("SELECT 1 FROM friends WHERE user_a = ?1 AND user_b = ?2");
    bind_static(s, 1, lo);
    bind_static(s, 2, hi);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_error(db_, "are_friends");
    return rc == SQLITE_ROW;
  }

  Result<std::vector<Friend>> list_friends(const std::string& user_id) override {
    auto* s = prepare(
        "SELECT user_b, since_ms FROM friends WHERE user_a = ?1 UNION ALL "
        "SELECT user_a, since_ms FROM friends WHERE user_b = ?1 ORDER BY 1");
    bind_static(s, 1, user_id);
    std::vector<Friend> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      out.push_back(Friend{col(s, 0), sqlite3_column_int64(s, 1)});
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "list_friends");
    return out;
  }

  // --- voice rooms (DESIGN.md section 7) ---
  // The writer holds SQLite's one write lock for the whole transaction: a room's row needs no
  // lock of its own, and what a call reads stays true until it commits.
  Result<RoomId> room_create(const Room& r) override {
    auto* s =
        prepare("INSERT INTO rooms(name, owner, max_members, created_at_ms) VALUES(?1,?2,?3,?4)");
    bind_static(s, 1, r.name);
    bind_static(s, 2, r.owner);
    sqlite3_bind_int64(s, 3, r.max_members);
    sqlite3_bind_int64(s, 4, r.created_at_ms);
    int rc = sqlite3_step(s);
    const int ext = sqlite3_extended_errcode(db_);
    sqlite3_reset(s);
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY) return make_error(Errc::not_found, "no such user");
    if (rc != SQLITE_DONE) return db_error(db_, "room_create");
    return static_cast<RoomId>(sqlite3_last_insert_rowid(db_));
  }

  Result<std::optional<Room>> room_get(RoomId id) override {
    static const std::string sql = std::string(kRoomSelect) + "WHERE r.id = ?1";
    auto* s = prepare(sql.c_str());
    sqlite3_bind_int64(s, 1, id);
    auto rows = room_rows(s, "room_get");
    if (!rows) return rows.error();
    if (rows->empty()) return std::optional<Room>();
    return std::optional<Room>(std::move(rows->front()));
  }

  Result<std::vector<Room>> rooms_list(RoomId after_id, int64_t limit) override {
    static const std::string sql =
        std::string(kRoomSelect) + "WHERE r.id > ?1 ORDER BY r.id LIMIT ?2";
    auto* s = prepare(sql.c_str());
    sqlite3_bind_int64(s, 1, after_id);
    sqlite3_bind_int64(s, 2, limit);
    return room_rows(s, "rooms_list");
  }

  // Its members and bans go with it (ON DELETE CASCADE).
  Status room_delete(RoomId id) override {
    auto* s = prepare("DELETE FROM rooms WHERE id = ?1");
    sqlite3_bind_int64(s, 1, id);
    return done_changed(s, "room_delete", "no such room");
  }

  // One read says everything the decision needs (the room, the ban, the count, the user's row);
  // then one write, or two for a new member (the row, and the room's next number).
  Result<RoomJoin> room_join(RoomId id, const std::string& user_id, const std::string& node_id,
                             int64_t conn_id, int64_t now) override {
    if (sqlite3_get_autocommit(db_))
      return make_error(Errc::internal, "room_join: outside a transaction");
    auto* s = prepare(
        "SELECT r.max_members, r.next_member_no, "
        "EXISTS(SELECT 1 FROM room_bans b WHERE b.room_id = r.id AND b.user_id = ?2), "
        "(SELECT count(*) FROM room_members c WHERE c.room_id = r.id), "
        "m.member_no, m.muted, m.joined_at_ms "
        "FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = ?2 "
        "WHERE r.id = ?1");
    sqlite3_bind_int64(s, 1, id);
    bind_static(s, 2, user_id);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
      sqlite3_reset(s);
      if (rc != SQLITE_DONE) return db_error(db_, "room_join");
      return make_error(Errc::not_found, "no such room");
    }
    const int64_t max_members = sqlite3_column_int64(s, 0);
    const int64_t next_no = sqlite3_column_int64(s, 1);
    const bool banned = sqlite3_column_int(s, 2) != 0;
    const int64_t count = sqlite3_column_int64(s, 3);
    const bool member = sqlite3_column_type(s, 4) != SQLITE_NULL;
    RoomJoin out;
    out.member = RoomMember{id,
                            user_id,
                            static_cast<uint32_t>(sqlite3_column_int64(s, 4)),
                            sqlite3_column_int(s, 5) != 0,
                            node_id,
                            conn_id,
                            sqlite3_column_int64(s, 6)};
    sqlite3_reset(s);
    if (banned) return make_error(Errc::forbidden, "removed from this room");
    if (member) {
      s = prepare(
          "UPDATE room_members SET node_id = ?3, conn_id = ?4 WHERE room_id = ?1 AND user_id = ?2");
      sqlite3_bind_int64(s, 1, id);
      bind_static(s, 2, user_id);
      bind_static(s, 3, node_id);
      sqlite3_bind_int64(s, 4, conn_id);
      if (auto st = done(s, "room_join"); !st) return st.error();
      out.fresh = false;
      return out;
    }
    if (count >= max_members) return make_error(Errc::room_full, "the room is full");
    s = prepare(
        "INSERT INTO room_members(room_id, user_id, member_no, muted, node_id, conn_id, "
        "joined_at_ms) VALUES(?1,?2,?3,0,?4,?5,?6)");
    sqlite3_bind_int64(s, 1, id);
    bind_static(s, 2, user_id);
    sqlite3_bind_int64(s, 3, next_no);
    bind_static(s, 4, node_id);
    sqlite3_bind_int64(s, 5, conn_id);
    sqlite3_bind_int64(s, 6, now);
    rc = sqlite3_step(s);
    const int ext = sqlite3_extended_errcode(db_);
    sqlite3_reset(s);
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY) return make_error(Errc::not_found, "no such user");
    if (rc != SQLITE_DONE) return db_error(db_, "room_join");
    s = prepare("UPDATE rooms SET next_member_no = next_member_no + 1 WHERE id = ?1");
    sqlite3_bind_int64(s, 1, id);
    if (auto st = done(s, "room_join"); !st) return st.error();
    out.member =
        RoomMember{id, user_id, static_cast<uint32_t>(next_no), false, node_id, conn_id, now};
    out.fresh = true;
    return out;
  }

  Result<std::optional<RoomMember>> room_leave(RoomId id, const std::string& user_id,
                                               const std::string& node_id,
                                               int64_t conn_id) override {
    static const std::string sql =
        "DELETE FROM room_members WHERE room_id = ?1 AND user_id = ?2 AND node_id = ?3 AND "
        "conn_id = ?4 RETURNING " +
        std::string(kRoomMemberColumns);
    auto* s = prepare(sql.c_str());
    sqlite3_bind_int64(s, 1, id);
    bind_static(s, 2, user_id);
    bind_static(s, 3, node_id);
    sqlite3_bind_int64(s, 4, conn_id);
    auto rows = room_member_rows(s, "room_leave");
    if (!rows) return rows.error();
    if (rows->empty()) return std::optional<RoomMember>();
    return std::optional<RoomMember>(std::move(rows->front()));
  }

  // The row goes and the ban stays (a second removal finds it there: nothing more to do).
  Result<std::optional<RoomMember>> room_remove(RoomId id, const std::string& user_id) override {
    if (sqlite3_get_autocommit(db_))
      return make_error(Errc::internal, "room_remove: outside a transaction");
    if (auto st = room_exists(id, "room_remove"); !st) return st.error();
    static const std::string sql =
        "DELETE FROM room_members WHERE room_id = ?1 AND user_id = ?2 RETURNING " +
        std::string(kRoomMemberColumns);
    auto* s = prepare(sql.c_str());
    sqlite3_bind_int64(s, 1, id);
    bind_static(s, 2, user_id);
    auto rows = room_member_rows(s, "room_remove");
    if (!rows) return rows.error();
    s = prepare("INSERT INTO room_bans(room_id, user_id) VALUES(?1,?2) ON CONFLICT DO NOTHING");
    sqlite3_bind_int64(s, 1, id);
    bind_static(s, 2, user_id);
    int rc = sqlite3_step(s);
    const int ext = sqlite3_extended_errcode(db_);
    sqlite3_reset(s);
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY) return make_error(Errc::not_found, "no such user");
    if (rc != SQLITE_DONE) return db_error(db_, "room_remove");
    if (rows->empty()) return std::optional<RoomMember>();
    return std::optional<RoomMember>(std::move(rows->front()));
  }

  Status room_set_muted(RoomId id, const std::string& user_id, bool muted) override {
    auto* s = prepare("UPDATE room_members SET muted = ?3 WHERE room_id = ?1 AND user_id = ?2");
    sqlite3_bind_int64(s, 1, id);
    bind_static(s, 2, user_id);
    sqlite3_bind_int(s, 3, muted ? 1 : 0);
    return done_changed(s, "room_set_muted", "not a member");
  }

  Result<std::vector<RoomMember>> room_members(RoomId id) override {
    static const std::string sql = "SELECT " + std::string(kRoomMemberColumns) +
                                   " FROM room_members WHERE room_id = ?1 ORDER BY member_no";
    auto* s = prepare(sql.c_str());
    sqlite3_bind_int64(s, 1, id);
    return room_member_rows(s, "room_members");
  }

  // One statement, as on PostgreSQL (where it is what hands each row to one caller).
  Result<std::vector<RoomMember>> room_leave_node(const std::string& node_id) override {
    static const std::string sql =
        "DELETE FROM room_members WHERE node_id = ?1 RETURNING " + std::string(kRoomMemberColumns);
    auto* s = prepare(sql.c_str());
    bind_static(s, 1, node_id);
    auto rows = room_member_rows(s, "room_leave_node");
    if (!rows) return rows.error();
    // RETURNING's order is unspecified: by room, then member_no.
    std::sort(rows->begin(), rows->end(), [](const RoomMember& a, const RoomMember& b) {
      return std::pair(a.room_id, a.member_no) < std::pair(b.room_id, b.member_no);
    });
    return rows;
  }

  Status room_members_clear() override {
    return done(prepare("DELETE FROM room_members"), "room_members_clear");
  }

  // --- messages ---
  Result<std::optional<SentRef>> find_sent(const std::string& publisher,
                                           const std::string& cmid) override {
    auto* s = prepare(
        "SELECT conversation_id, seq, ts FROM messages WHERE publisher_id = ?1 AND "
        "client_msg_id = ?2");
    bind(s, 1, publisher);
    bind(s, 2, cmid);
    std::optional<SentRef> out;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      out = SentRef{sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
                    sqlite3_column_int64(s, 2)};
      rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "find_sent");
    return out;
  }

  // The other batched calls are StoreSession's loops: in-process, a statement costs no round
  // trip. This one saves the copies of the keys.
  Result<std::vector<std::optional<SentRef>>> find_sent_many(
      std::span<const SentKey> keys) override {
    auto* s = prepare(
        "SELECT conversation_id, seq, ts FROM messages WHERE publisher_id = ?1 AND "
        "client_msg_id = ?2");
    std::vector<std::optional<SentRef>> out;
    out.reserve(keys.size());
    for (auto& k : keys) {
      bind_static(s, 1, k.publisher_id);
      bind_static(s, 2, k.client_msg_id);
      std::optional<SentRef> ref;
      int rc = sqlite3_step(s);
      if (rc == SQLITE_ROW) {
        ref = SentRef{sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
                      sqlite3_column_int64(s, 2)};
        rc = sqlite3_step(s);
      }
      sqlite3_reset(s);
      if (rc != SQLITE_DONE) return db_error(db_, "find_sent_many");
      out.push_back(ref);
    }
    return out;
  }

  Result<ConversationLock> lock_conversation(ConversationId id) override {
    // The writer holds SQLite's one write lock for the whole transaction: a read is enough.
    auto* s = prepare("SELECT last_seq, members_version FROM conversations WHERE id = ?1");
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    std::optional<ConversationLock> out;
    if (rc == SQLITE_ROW) {
      out = ConversationLock{sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1)};
      rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "lock_conversation");
    if (!out) return make_error(Errc::not_found, "no such conversation");
    return *out;
  }

  Status set_last_seq(ConversationId id, Seq seq) override {
    auto* s = prepare("UPDATE conversations SET last_seq = ?2 WHERE id = ?1");
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, seq);
    return done_changed(s, "set_last_seq", "no such conversation");
  }

  Result<bool> insert_message(const Message& m, const std::string& file_id) override {
    // OR IGNORE: a (publisher, client_msg_id) already stored is a retry, not an error; the
    // unique index answers it in the same descent that inserts, so a send costs one statement.
    auto* s = prepare(
        "INSERT OR IGNORE INTO messages(conversation_id, seq, publisher_id, publisher_name, "
        "type, body, client_msg_id, file_id, ts, mentions) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)");
    sqlite3_bind_int64(s, 1, m.conversation_id);
    sqlite3_bind_int64(s, 2, m.seq);
    bind_static(s, 3, m.publisher_id);
    bind_static(s, 4, m.publisher_name);
    bind_static(s, 5, message_type_name(m.type));
    bind_static(s, 6, m.body);
    if (m.client_msg_id.empty())
      sqlite3_bind_null(s, 7);
    else
      bind_static(s, 7, m.client_msg_id);
    if (file_id.empty())
      sqlite3_bind_null(s, 8);
    else
      bind_static(s, 8, file_id);
    sqlite3_bind_int64(s, 9, m.ts_ms);
    const std::string mentions = join_mentions(m.mentions);
    bind_static(s, 10, mentions);
    int rc = step_done(s);
    if (rc != SQLITE_DONE) return db_error(db_, "insert_message");
    return sqlite3_changes(db_) == 1;
  }

  // kInsertRows messages a statement (the last one of a call takes the rest): a statement's
  // cost beside its rows' (a step, cursors opened and closed, the halt) is then paid once for
  // many, 14 % of a message's insert on the chat shape. OR IGNORE, as insert_message: a row
  // refused is left out and the others stored. When all of a statement's rows are stored
  // (changes() says so) the answers are known; otherwise each row's slot is read back: a row is
  // stored when its (conversation, seq) holds it (OR IGNORE never overwrites, so a row found
  // there with the same publisher, client_msg_id, type, body and ts is this one, or one the
  // same in every respect, which answers the same). An error fails the call and leaves the
  // statements before it stored: the caller rolls the transaction back, or goes on under a
  // savepoint.
  static constexpr int kInsertRows = 32;

  Result<std::vector<bool>> insert_messages(std::span<const Message> msgs,
                                            std::span<const std::string> files) override {
    if (msgs.size() != files.size())
      return make_error(Errc::internal, "insert_messages: as many file ids as messages");
    std::vector<bool> out(msgs.size(), true);
    std::vector<std::string> mentions(static_cast<std::size_t>(kInsertRows));
    for (std::size_t first = 0; first < msgs.size(); first += kInsertRows) {
      const int n = static_cast<int>(std::min<std::size_t>(kInsertRows, msgs.size() - first));
      sqlite3_stmt* s = insert_rows_statement(n);
      for (int r = 0; r < n; ++r) {
        const Message& m = msgs[first + static_cast<std::size_t>(r)];
        const std::string& file_id = files[first + static_cast<std::size_t>(r)];
        const int o = r * 10;
        sqlite3_bind_int64(s, o + 1, m.conversation_id);
        sqlite3_bind_int64(s, o + 2, m.seq);
        bind_static(s, o + 3, m.publisher_id);
        bind_static(s, o + 4, m.publisher_name);
        bind_static(s, o + 5, message_type_name(m.type));
        bind_static(s, o + 6, m.body);
        if (m.client_msg_id.empty())
          sqlite3_bind_null(s, o + 7);
        else
          bind_static(s, o + 7, m.client_msg_id);
        if (file_id.empty())
          sqlite3_bind_null(s, o + 8);
        else
          bind_static(s, o + 8, file_id);
        sqlite3_bind_int64(s, o + 9, m.ts_ms);
        mentions[static_cast<std::size_t>(r)] = join_mentions(m.mentions);
        bind_static(s, o + 10, mentions[static_cast<std::size_t>(r)]);
      }
      if (step_done(s) != SQLITE_DONE) return db_error(db_, "insert_messages");
      if (sqlite3_changes(db_) == n) continue;
      for (int r = 0; r < n; ++r) {
        const Message& m = msgs[first + static_cast<std::size_t>(r)];
        auto at = messages_after(m.conversation_id, m.seq - 1, 1);
        if (!at) return at.error();
        const auto& v = at.value();
        out[first + static_cast<std::size_t>(r)] =
            !v.empty() && v[0].seq == m.seq && v[0].publisher_id == m.publisher_id &&
            v[0].client_msg_id == m.client_msg_id && v[0].type == m.type && v[0].body == m.body &&
            v[0].ts_ms == m.ts_ms;
      }
    }
    return out;
  }

  Status move_message(ConversationId id, Seq from, Seq to) override {
    auto* s = prepare("UPDATE messages SET seq = ?3 WHERE conversation_id = ?1 AND seq = ?2");
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, from);
    sqlite3_bind_int64(s, 3, to);
    return done_changed(s, "move_message", "no such message");
  }

  Result<std::vector<Message>> messages_after(ConversationId id, Seq after,
                                              int64_t limit) override {
    auto* s = prepare(
        "SELECT m.conversation_id, m.seq, m.publisher_id, m.publisher_name, m.type, m.body, "
        "m.client_msg_id, m.ts, f.id, f.sha256, f.name, f.mime, f.size, f.uploader, f.created_at, "
        "m.mentions "
        "FROM messages m LEFT JOIN files f ON f.id = m.file_id "
        "WHERE m.conversation_id = ?1 AND m.seq > ?2 ORDER BY m.seq LIMIT ?3");
    return message_rows(s, id, after, limit, false);
  }

  Result<std::vector<Message>> messages_before(ConversationId id, Seq before,
                                               int64_t limit) override {
    auto* s = prepare(
        "SELECT m.conversation_id, m.seq, m.publisher_id, m.publisher_name, m.type, m.body, "
        "m.client_msg_id, m.ts, f.id, f.sha256, f.name, f.mime, f.size, f.uploader, f.created_at, "
        "m.mentions "
        "FROM messages m LEFT JOIN files f ON f.id = m.file_id "
        "WHERE m.conversation_id = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3");
    return message_rows(s, id, before, limit, true);
  }

  // --- cursors ---
  Status advance_acked(const std::string& user, const std::string& device, ConversationId id,
                       Seq seq) override {
    auto* s = prepare(
        "INSERT INTO cursors(user_id, device_id, conversation_id, acked, fetched) "
        "VALUES(?1,?2,?3,?4,0) ON CONFLICT(user_id, device_id, conversation_id) DO UPDATE SET "
        "acked = MAX(acked, excluded.acked)");
    return cursor_upsert(s, user, device, id, seq);
  }

  Status advance_fetched(const std::string& user, const std::string& device, ConversationId id,
                         Seq seq) override {
    auto* s = prepare(
        "INSERT INTO cursors(user_id, device_id, conversation_id, acked, fetched) "
        "VALUES(?1,?2,?3,0,?4) ON CONFLICT(user_id, device_id, conversation_id) DO UPDATE SET "
        "fetched = MAX(fetched, excluded.fetched)");
    return cursor_upsert(s, user, device, id, seq);
  }

  Result<std::vector<std::pair<ConversationId, DeviceCursor>>> cursors(
      const std::string& user, const std::string& device) override {
    auto* s = prepare(
        "SELECT conversation_id, acked, fetched FROM cursors WHERE user_id = ?1 AND device_id = "
        "?2");
    bind(s, 1, user);
    bind(s, 2, device);
    std::vector<std::pair<ConversationId, DeviceCursor>> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      out.emplace_back(sqlite3_column_int64(s, 0),
                       DeviceCursor{sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2)});
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "cursors");
    return out;
  }

  Result<std::vector<std::string>> shared_members(const std::string& user,
                                                  std::span<const std::string> others) override {
    auto* s = prepare(
        "SELECT EXISTS(SELECT 1 FROM members a JOIN members b ON b.conversation_id = "
        "a.conversation_id WHERE a.user_id = ?1 AND b.user_id = ?2)");
    std::vector<std::string> out;
    bind(s, 1, user);
    for (auto& o : others) {
      if (std::find(out.begin(), out.end(), o) != out.end()) continue;
      bind(s, 2, o);
      int rc = sqlite3_step(s);
      bool yes = rc == SQLITE_ROW && sqlite3_column_int(s, 0) != 0;
      if (rc == SQLITE_ROW) rc = sqlite3_step(s);
      sqlite3_reset(s);
      if (rc != SQLITE_DONE) return db_error(db_, "shared_members");
      if (yes) out.push_back(o);
    }
    return out;
  }

  // --- push ---
  Status push_outbox_add(const std::string& node, std::span<const PushRef> refs,
                         int64_t now) override {
    auto* s = prepare(
        "INSERT OR IGNORE INTO push_outbox(conversation_id, seq, node_id, created_at) "
        "VALUES(?1,?2,?3,?4)");
    for (auto& r : refs) {
      sqlite3_bind_int64(s, 1, r.conversation_id);
      sqlite3_bind_int64(s, 2, r.seq);
      bind_static(s, 3, node);
      sqlite3_bind_int64(s, 4, now);
      if (auto st = done(s, "push_outbox_add"); !st) return st;
    }
    return ok_status();
  }

  Result<std::vector<PushRef>> push_outbox_owned(const std::string& node,
                                                 std::span<const PushRef> refs) override {
    auto* s = prepare(
        "SELECT 1 FROM push_outbox WHERE conversation_id = ?1 AND seq = ?2 AND node_id = ?3");
    std::vector<PushRef> out;
    for (auto& r : refs) {
      sqlite3_bind_int64(s, 1, r.conversation_id);
      sqlite3_bind_int64(s, 2, r.seq);
      bind_static(s, 3, node);
      int rc = sqlite3_step(s);
      if (rc == SQLITE_ROW) out.push_back(r);
      sqlite3_reset(s);
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_error(db_, "push_outbox_owned");
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  Result<std::vector<PushRef>> push_outbox_list(const std::string& node, PushRef after,
                                                int64_t limit) override {
    auto* s = prepare(
        "SELECT conversation_id, seq FROM push_outbox WHERE node_id = ?1 AND "
        "(conversation_id, seq) > (?2, ?3) ORDER BY conversation_id, seq LIMIT ?4");
    bind_static(s, 1, node);
    sqlite3_bind_int64(s, 2, after.conversation_id);
    sqlite3_bind_int64(s, 3, after.seq);
    sqlite3_bind_int64(s, 4, limit);
    std::vector<PushRef> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      out.push_back(PushRef{sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1)});
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "push_outbox_list");
    return out;
  }

  Result<int64_t> push_outbox_remove(const std::string& node,
                                     std::span<const PushRef> refs) override {
    auto* s =
        prepare("DELETE FROM push_outbox WHERE conversation_id = ?1 AND seq = ?2 AND node_id = ?3");
    int64_t n = 0;
    for (auto& r : refs) {
      sqlite3_bind_int64(s, 1, r.conversation_id);
      sqlite3_bind_int64(s, 2, r.seq);
      bind_static(s, 3, node);
      if (auto st = done(s, "push_outbox_remove"); !st) return st.error();
      n += sqlite3_changes(db_);
    }
    return n;
  }

  Status push_pending_put(const std::string& node, std::span<const PushRecord> records) override {
    auto* s = prepare(
        "INSERT OR REPLACE INTO push_pending(user_id, conversation_id, seq, node_id, payload, "
        "attempts, next_at, last_error) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)");
    for (auto& r : records) {
      bind_static(s, 1, r.user_id);
      sqlite3_bind_int64(s, 2, r.conversation_id);
      sqlite3_bind_int64(s, 3, r.seq);
      bind_static(s, 4, node);
      bind_static(s, 5, r.payload);
      sqlite3_bind_int64(s, 6, r.attempts);
      sqlite3_bind_int64(s, 7, r.at_ms);
      bind_static(s, 8, r.last_error);
      if (auto st = done(s, "push_pending_put"); !st) return st;
    }
    return ok_status();
  }

  Status push_pending_remove(const std::string& node, std::span<const PushRecord> keys) override {
    auto* s = prepare(
        "DELETE FROM push_pending WHERE user_id = ?1 AND conversation_id = ?2 AND seq = ?3 "
        "AND node_id = ?4");
    for (auto& k : keys) {
      bind_static(s, 1, k.user_id);
      sqlite3_bind_int64(s, 2, k.conversation_id);
      sqlite3_bind_int64(s, 3, k.seq);
      bind_static(s, 4, node);
      if (auto st = done(s, "push_pending_remove"); !st) return st;
    }
    return ok_status();
  }

  Result<std::vector<PushRecord>> push_pending_due(const std::string& node, int64_t now,
                                                   int64_t limit) override {
    auto* s = prepare(
        "SELECT user_id, conversation_id, seq, payload, attempts, next_at, last_error "
        "FROM push_pending WHERE node_id = ?1 AND next_at <= ?2 "
        "ORDER BY next_at, user_id, conversation_id, seq LIMIT ?3");
    bind_static(s, 1, node);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int64(s, 3, limit);
    return push_records(s, "push_pending_due");
  }

  Result<std::optional<int64_t>> push_pending_next(const std::string& node) override {
    auto* s = prepare("SELECT min(next_at) FROM push_pending WHERE node_id = ?1");
    bind_static(s, 1, node);
    std::optional<int64_t> out;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
      out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) return db_error(db_, "push_pending_next");
    return out;
  }

  Status push_dead_put(std::span<const PushRecord> records) override {
    auto* s = prepare(
        "INSERT OR REPLACE INTO push_dead(user_id, conversation_id, seq, payload, attempts, "
        "dead_at, last_error) VALUES(?1,?2,?3,?4,?5,?6,?7)");
    for (auto& r : records) {
      bind_static(s, 1, r.user_id);
      sqlite3_bind_int64(s, 2, r.conversation_id);
      sqlite3_bind_int64(s, 3, r.seq);
      bind_static(s, 4, r.payload);
      sqlite3_bind_int64(s, 5, r.attempts);
      sqlite3_bind_int64(s, 6, r.at_ms);
      bind_static(s, 7, r.last_error);
      if (auto st = done(s, "push_dead_put"); !st) return st;
    }
    return ok_status();
  }

  Result<std::vector<PushRecord>> push_dead_list(int64_t limit) override {
    auto* s = prepare(
        "SELECT user_id, conversation_id, seq, payload, attempts, dead_at, last_error "
        "FROM push_dead ORDER BY dead_at DESC, user_id, conversation_id, seq LIMIT ?1");
    sqlite3_bind_int64(s, 1, limit);
    return push_records(s, "push_dead_list");
  }

  // A loose index scan per table (a probe of the node_id index per owner), not a scan of rows.
  Result<std::vector<std::string>> push_owners() override {
    auto* s = prepare(
        "WITH RECURSIVE o(n) AS (SELECT min(node_id) FROM push_outbox UNION ALL "
        "SELECT (SELECT min(node_id) FROM push_outbox WHERE node_id > o.n) FROM o "
        "WHERE o.n IS NOT NULL), p(n) AS (SELECT min(node_id) FROM push_pending UNION ALL "
        "SELECT (SELECT min(node_id) FROM push_pending WHERE node_id > p.n) FROM p "
        "WHERE p.n IS NOT NULL) "
        "SELECT n FROM o WHERE n IS NOT NULL UNION SELECT n FROM p WHERE n IS NOT NULL "
        "ORDER BY 1");
    std::vector<std::string> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(col(s, 0));
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "push_owners");
    return out;
  }

  Result<int64_t> push_adopt(const std::string& from, const std::string& to) override {
    int64_t n = 0;
    for (const char* sql : {"UPDATE push_outbox SET node_id = ?2 WHERE node_id = ?1",
                            "UPDATE push_pending SET node_id = ?2 WHERE node_id = ?1"}) {
      auto* s = prepare(sql);
      bind_static(s, 1, from);
      bind_static(s, 2, to);
      if (auto st = done(s, "push_adopt"); !st) return st.error();
      n += sqlite3_changes(db_);
    }
    return n;
  }

  // --- presence ---
  Status presence_put(std::span<const PresenceRow> rows) override {
    for (auto& r : rows) {
      auto* s = prepare(
          "INSERT OR REPLACE INTO presence(node_id, conn_id, user_id, device_id, protocol, since) "
          "VALUES(?1,?2,?3,?4,?5,?6)");
      bind(s, 1, r.node_id);
      sqlite3_bind_int64(s, 2, r.conn_id);
      bind(s, 3, r.user_id);
      bind(s, 4, r.device_id);
      bind(s, 5, r.protocol);
      sqlite3_bind_int64(s, 6, r.since_ms);
      if (auto st = done(s, "presence_put"); !st) return st;
    }
    return ok_status();
  }

  Status presence_drop(const std::string& node, std::span<const int64_t> conn_ids) override {
    for (auto id : conn_ids) {
      auto* s = prepare("DELETE FROM presence WHERE node_id = ?1 AND conn_id = ?2");
      bind(s, 1, node);
      sqlite3_bind_int64(s, 2, id);
      if (auto st = done(s, "presence_drop"); !st) return st;
    }
    return ok_status();
  }

  Status presence_clear(const std::string& node) override {
    auto* s = prepare("DELETE FROM presence WHERE node_id = ?1");
    bind(s, 1, node);
    return done(s, "presence_clear");
  }

  Result<std::vector<PresenceRow>> presence_of(std::span<const std::string> users) override {
    std::vector<PresenceRow> out;
    auto* s = prepare(
        "SELECT node_id, conn_id, user_id, device_id, protocol, since FROM presence "
        "WHERE user_id = ?1 ORDER BY node_id, conn_id");
    std::vector<std::string> sorted(users.begin(), users.end());
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    for (auto& u : sorted) {
      bind(s, 1, u);
      int rc;
      while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        out.push_back(PresenceRow{col(s, 0), sqlite3_column_int64(s, 1), col(s, 2), col(s, 3),
                                  col(s, 4), sqlite3_column_int64(s, 5)});
      sqlite3_reset(s);
      if (rc != SQLITE_DONE) return db_error(db_, "presence_of");
    }
    return out;
  }

  // --- MQTT sessions ---
  Status mqtt_sessions_write(std::span<const MqttSessionWrite> writes) override {
    for (auto& w : writes) {
      if (w.erase) {
        auto* s = prepare("DELETE FROM mqtt_subscriptions WHERE client_id = ?1");
        bind(s, 1, w.client_id);
        if (auto st = done(s, "mqtt_sessions_write"); !st) return st;
        s = prepare("DELETE FROM mqtt_sessions WHERE client_id = ?1");
        bind(s, 1, w.client_id);
        if (auto st = done(s, "mqtt_sessions_write"); !st) return st;
        continue;
      }
      if (w.row) {
        auto* s = prepare(
            "INSERT INTO mqtt_sessions(client_id, user_id, expiry_s, disconnected_at, node_id) "
            "VALUES(?1,?2,?3,?4,?5) ON CONFLICT(client_id) DO UPDATE SET user_id = "
            "excluded.user_id, "
            "expiry_s = excluded.expiry_s, disconnected_at = excluded.disconnected_at, "
            "node_id = excluded.node_id");
        bind(s, 1, w.client_id);
        bind(s, 2, w.row->user_id);
        sqlite3_bind_int64(s, 3, w.row->expiry_s);
        sqlite3_bind_int64(s, 4, w.row->disconnected_at_ms);
        bind(s, 5, w.row->node_id);
        if (auto st = done(s, "mqtt_sessions_write"); !st) return st;
      }
      if (w.reset_subs) {
        auto* s = prepare("DELETE FROM mqtt_subscriptions WHERE client_id = ?1");
        bind(s, 1, w.client_id);
        if (auto st = done(s, "mqtt_sessions_write"); !st) return st;
      }
      for (auto& [filter, sub] : w.subs) {
        if (!sub) {
          auto* s = prepare("DELETE FROM mqtt_subscriptions WHERE client_id = ?1 AND filter = ?2");
          bind(s, 1, w.client_id);
          bind(s, 2, filter);
          if (auto st = done(s, "mqtt_sessions_write"); !st) return st;
          continue;
        }
        // Only under a session row (a session erased meanwhile has none: nothing to add).
        auto* s = prepare(
            "INSERT OR REPLACE INTO mqtt_subscriptions(client_id, filter, qos, no_local, "
            "retain_as_published, retain_handling, subscription_id) "
            "SELECT ?1,?2,?3,?4,?5,?6,?7 WHERE EXISTS "
            "(SELECT 1 FROM mqtt_sessions WHERE client_id = ?1)");
        bind(s, 1, w.client_id);
        bind(s, 2, filter);
        sqlite3_bind_int(s, 3, sub->qos);
        sqlite3_bind_int(s, 4, sub->no_local ? 1 : 0);
        sqlite3_bind_int(s, 5, sub->retain_as_published ? 1 : 0);
        sqlite3_bind_int(s, 6, sub->retain_handling);
        sqlite3_bind_int64(s, 7, sub->subscription_id);
        if (auto st = done(s, "mqtt_sessions_write"); !st) return st;
      }
    }
    return ok_status();
  }

  Result<std::optional<MqttSessionRow>> mqtt_session_get(const std::string& client_id) override {
    auto* s = prepare(
        "SELECT user_id, expiry_s, disconnected_at, node_id FROM mqtt_sessions "
        "WHERE client_id = ?1");
    bind(s, 1, client_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
      sqlite3_reset(s);
      return std::optional<MqttSessionRow>{};
    }
    if (rc != SQLITE_ROW) {
      sqlite3_reset(s);
      return db_error(db_, "mqtt_session_get");
    }
    MqttSessionRow row;
    row.client_id = client_id;
    row.user_id = col(s, 0);
    row.expiry_s = sqlite3_column_int64(s, 1);
    row.disconnected_at_ms = sqlite3_column_int64(s, 2);
    row.node_id = col(s, 3);
    sqlite3_reset(s);
    s = prepare(
        "SELECT filter, qos, no_local, retain_as_published, retain_handling, subscription_id "
        "FROM mqtt_subscriptions WHERE client_id = ?1 ORDER BY filter");
    bind(s, 1, client_id);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      MqttSubRow sub;
      sub.filter = col(s, 0);
      sub.qos = static_cast<uint8_t>(sqlite3_column_int(s, 1));
      sub.no_local = sqlite3_column_int(s, 2) != 0;
      sub.retain_as_published = sqlite3_column_int(s, 3) != 0;
      sub.retain_handling = static_cast<uint8_t>(sqlite3_column_int(s, 4));
      sub.subscription_id = static_cast<uint32_t>(sqlite3_column_int64(s, 5));
      row.subs.push_back(std::move(sub));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "mqtt_session_get");
    return std::optional<MqttSessionRow>(std::move(row));
  }

  Status mqtt_sessions_release(const std::string& node, int64_t now_ms) override {
    auto* s = prepare(
        "UPDATE mqtt_sessions SET disconnected_at = ?2 WHERE (?1 = '' OR node_id = ?1) AND "
        "disconnected_at = 0");
    bind(s, 1, node);
    sqlite3_bind_int64(s, 2, now_ms);
    return done(s, "mqtt_sessions_release");
  }

  Result<int64_t> mqtt_sessions_expire(int64_t now_ms) override {
    auto* s = prepare(
        "DELETE FROM mqtt_subscriptions WHERE client_id IN (SELECT client_id FROM mqtt_sessions "
        "WHERE disconnected_at > 0 AND disconnected_at + expiry_s * 1000 <= ?1)");
    sqlite3_bind_int64(s, 1, now_ms);
    if (auto st = done(s, "mqtt_sessions_expire"); !st) return st.error();
    s = prepare(
        "DELETE FROM mqtt_sessions WHERE disconnected_at > 0 AND "
        "disconnected_at + expiry_s * 1000 <= ?1");
    sqlite3_bind_int64(s, 1, now_ms);
    if (auto st = done(s, "mqtt_sessions_expire"); !st) return st.error();
    return static_cast<int64_t>(sqlite3_changes(db_));
  }

  // --- files ---
  Status insert_file(const FileMeta& f) override {
    auto* s = prepare(
        "INSERT INTO files(id, sha256, name, mime, size, uploader, created_at) "
        "VALUES(?1,?2,?3,?4,?5,?6,?7)");
    bind(s, 1, f.id);
    bind(s, 2, f.sha256);
    bind(s, 3, f.name);
    bind(s, 4, f.mime);
    sqlite3_bind_int64(s, 5, f.size);
    bind(s, 6, f.uploader);
    sqlite3_bind_int64(s, 7, f.created_at_ms);
    return done(s, "insert_file");
  }

  Result<std::optional<FileMeta>> get_file(const std::string& id) override {
    auto* s = prepare(
        "SELECT id, sha256, name, mime, size, uploader, created_at FROM files WHERE id = ?1");
    bind(s, 1, id);
    std::optional<FileMeta> out;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      FileMeta f;
      f.id = col(s, 0);
      f.sha256 = col(s, 1);
      f.name = col(s, 2);
      f.mime = col(s, 3);
      f.size = sqlite3_column_int64(s, 4);
      f.uploader = col(s, 5);
      f.created_at_ms = sqlite3_column_int64(s, 6);
      out = std::move(f);
      rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "get_file");
    return out;
  }

  Result<bool> file_accessible(const std::string& file_id, const std::string& user) override {
    auto* s = prepare(
        "SELECT EXISTS(SELECT 1 FROM files WHERE id = ?1 AND uploader = ?2) OR "
        "EXISTS(SELECT 1 FROM messages m JOIN members mm ON mm.conversation_id = m.conversation_id "
        "WHERE m.file_id = ?1 AND mm.user_id = ?2)");
    bind(s, 1, file_id);
    bind(s, 2, user);
    bool out = false;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      out = sqlite3_column_int(s, 0) != 0;
      rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "file_accessible");
    return out;
  }

  // --- copying a whole store (store.hpp) ---
  Status export_all(StoreRowSink& sink, const BatchLimits& limits) override {
    // The write lock, not only a snapshot: nothing is written behind the copy's back, and a
    // node started meanwhile fails at its start (its migration's BEGIN IMMEDIATE times out).
    if (auto st = exec("BEGIN IMMEDIATE"); !st)
      return make_error(Errc::unavailable,
                        "cannot lock the database for the export (is a node running on it?): " +
                            st.error().message);
    auto st = export_tables(sink, limits);
    rollback();  // it only read
    return st;
  }

  Status import_rows(const StoreRows& r) override {
    for (auto& u : r.users) {
      auto* s = prepare(
          "INSERT INTO users(id, name, password_hash, is_admin, created_at, direct_policy) "
          "VALUES(?1,?2,?3,?4,?5,?6)");
      bind(s, 1, u.user.id);
      bind(s, 2, u.user.name);
      bind(s, 3, u.password_hash);
      sqlite3_bind_int(s, 4, u.user.is_admin ? 1 : 0);
      sqlite3_bind_int64(s, 5, u.user.created_at_ms);
      bind_static(s, 6, direct_policy_name(u.user.direct_policy));
      if (auto st = import_step(s, "users", u.user.id); !st) return st;
    }
    for (auto& t : r.tokens) {
      auto* s =
          prepare("INSERT INTO tokens(hash, user_id, device_id, expires_at) VALUES(?1,?2,?3,?4)");
      bind(s, 1, t.hash);
      bind(s, 2, t.user_id);
      bind(s, 3, t.device_id);
      sqlite3_bind_int64(s, 4, t.expires_at_ms);
      if (auto st = import_step(s, "tokens", t.user_id + "/" + t.device_id); !st) return st;
    }
    for (auto& row : r.conversations) {
      auto& c = row.conversation;
      auto* s = prepare(
          "INSERT INTO conversations(id, type, name, owner, direct_key, last_seq, created_at, "
          "members_version, notice, join_policy) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)");
      sqlite3_bind_int64(s, 1, c.id);
      bind_static(s, 2, conversation_type_name(c.type));
      bind(s, 3, c.name);
      bind(s, 4, c.owner);
      if (row.direct_key.empty())
        sqlite3_bind_null(s, 5);
      else
        bind(s, 5, row.direct_key);
      sqlite3_bind_int64(s, 6, c.last_seq);
      sqlite3_bind_int64(s, 7, c.created_at_ms);
      sqlite3_bind_int64(s, 8, c.members_version);
      bind_static(s, 9, c.notice);
      bind_static(s, 10, join_policy_name(c.join_policy));
      if (auto st = import_step(s, "conversations", std::to_string(c.id)); !st) return st;
    }
    // The members_version triggers count every member inserted as a change: each conversation
    // gets back the version it was imported with (members come in conversation order).
    for (std::size_t i = 0; i < r.members.size();) {
      const ConversationId id = r.members[i].conversation_id;
      int64_t added = 0;
      for (; i < r.members.size() && r.members[i].conversation_id == id; ++i, ++added) {
        auto& m = r.members[i];
        auto* s = prepare(
            "INSERT INTO members(conversation_id, user_id, muted, joined_at, role) "
            "VALUES(?1,?2,?3,?4,?5)");
        sqlite3_bind_int64(s, 1, m.conversation_id);
        bind(s, 2, m.user_id);
        sqlite3_bind_int(s, 3, m.muted ? 1 : 0);
        sqlite3_bind_int64(s, 4, m.joined_at_ms);
        bind_static(s, 5, role_name(m.role));
        if (auto st = import_step(s, "members", std::to_string(id) + "/" + m.user_id); !st)
          return st;
      }
      auto* s =
          prepare("UPDATE conversations SET members_version = members_version - ?2 WHERE id = ?1");
      sqlite3_bind_int64(s, 1, id);
      sqlite3_bind_int64(s, 2, added);
      if (auto st = done(s, "import members_version"); !st) return st;
    }
    for (auto& f : r.files)
      if (auto st = insert_file(f); !st)
        return make_error(st.error().code, "files " + f.id + ": " + st.error().message);
    for (auto& row : r.messages) {
      auto& m = row.message;
      auto* s = prepare(
          "INSERT INTO messages(conversation_id, seq, publisher_id, publisher_name, type, body, "
          "client_msg_id, file_id, ts, mentions) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)");
      sqlite3_bind_int64(s, 1, m.conversation_id);
      sqlite3_bind_int64(s, 2, m.seq);
      bind_static(s, 3, m.publisher_id);
      bind_static(s, 4, m.publisher_name);
      bind_static(s, 5, message_type_name(m.type));
      bind_static(s, 6, m.body);
      if (m.client_msg_id.empty())
        sqlite3_bind_null(s, 7);
      else
        bind_static(s, 7, m.client_msg_id);
      if (row.file_id.empty())
        sqlite3_bind_null(s, 8);
      else
        bind_static(s, 8, row.file_id);
      sqlite3_bind_int64(s, 9, m.ts_ms);
      const std::string mentions = join_mentions(m.mentions);
      bind_static(s, 10, mentions);
      if (auto st = import_step(s, "messages",
                                std::to_string(m.conversation_id) + "/" + std::to_string(m.seq));
          !st)
        return st;
    }
    for (auto& c : r.cursors) {
      auto* s = prepare(
          "INSERT INTO cursors(user_id, device_id, conversation_id, acked, fetched) "
          "VALUES(?1,?2,?3,?4,?5)");
      bind(s, 1, c.user_id);
      bind(s, 2, c.device_id);
      sqlite3_bind_int64(s, 3, c.conversation_id);
      sqlite3_bind_int64(s, 4, c.cursor.acked);
      sqlite3_bind_int64(s, 5, c.cursor.fetched);
      if (auto st =
              import_step(s, "cursors",
                          c.user_id + "/" + c.device_id + "/" + std::to_string(c.conversation_id));
          !st)
        return st;
    }
    for (auto& q : r.requests) {
      auto* s = prepare(
          "INSERT INTO requests(id, kind, conversation_id, user_id, from_id, text, status, "
          "decided_by, created_at_ms, decided_at_ms, expires_at_ms) "
          "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)");
      bind_request(s, q);
      if (auto st = import_step(s, "requests", q.id); !st) return st;
    }
    for (auto& f : r.friends) {
      auto* s = prepare("INSERT INTO friends(user_a, user_b, since_ms) VALUES(?1,?2,?3)");
      bind_static(s, 1, f.user_a);
      bind_static(s, 2, f.user_b);
      sqlite3_bind_int64(s, 3, f.since_ms);
      if (auto st = import_step(s, "friends", f.user_a + "/" + f.user_b); !st) return st;
    }
    // next_member_no starts at 1 again (its default): members are not copied.
    for (auto& room : r.rooms) {
      auto* s = prepare(
          "INSERT INTO rooms(id, name, owner, max_members, created_at_ms) VALUES(?1,?2,?3,?4,?5)");
      sqlite3_bind_int64(s, 1, room.id);
      bind_static(s, 2, room.name);
      bind_static(s, 3, room.owner);
      sqlite3_bind_int64(s, 4, room.max_members);
      sqlite3_bind_int64(s, 5, room.created_at_ms);
      if (auto st = import_step(s, "rooms", std::to_string(room.id)); !st) return st;
    }
    for (auto& [room_id, user_id] : r.room_bans) {
      auto* s = prepare("INSERT INTO room_bans(room_id, user_id) VALUES(?1,?2)");
      sqlite3_bind_int64(s, 1, room_id);
      bind_static(s, 2, user_id);
      if (auto st = import_step(s, "room_bans", std::to_string(room_id) + "/" + user_id); !st)
        return st;
    }
    return ok_status();
  }

  // Nothing to do: AUTOINCREMENT's sqlite_sequence follows the highest id inserted by itself
  // (conversations' and rooms').
  Status import_finish() override { return ok_status(); }

  Result<StoreCounts> count_rows() override {
    auto* s = prepare(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tokens), "
        "(SELECT count(*) FROM conversations), (SELECT count(*) FROM members), "
        "(SELECT count(*) FROM files), (SELECT count(*) FROM messages), "
        "(SELECT count(*) FROM cursors), (SELECT count(*) FROM requests), "
        "(SELECT count(*) FROM friends), (SELECT count(*) FROM rooms), "
        "(SELECT count(*) FROM room_bans)");
    int rc = sqlite3_step(s);
    StoreCounts c;
    if (rc == SQLITE_ROW) {
      c.users = sqlite3_column_int64(s, 0);
      c.tokens = sqlite3_column_int64(s, 1);
      c.conversations = sqlite3_column_int64(s, 2);
      c.members = sqlite3_column_int64(s, 3);
      c.files = sqlite3_column_int64(s, 4);
      c.messages = sqlite3_column_int64(s, 5);
      c.cursors = sqlite3_column_int64(s, 6);
      c.requests = sqlite3_column_int64(s, 7);
      c.friends = sqlite3_column_int64(s, 8);
      c.rooms = sqlite3_column_int64(s, 9);
      c.room_bans = sqlite3_column_int64(s, 10);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) return db_error(db_, "count_rows");
    return c;
  }

 private:
  // Statements are prepared once per session and reused; the SQL text's address is the key.
  // The statement of insert_messages for n rows (1..kInsertRows), prepared on first use.
  sqlite3_stmt* insert_rows_statement(int n) {
    auto& s = insert_rows_[static_cast<std::size_t>(n)];
    if (s) return s;
    std::string sql =
        "INSERT OR IGNORE INTO messages(conversation_id, seq, publisher_id, publisher_name, "
        "type, body, client_msg_id, file_id, ts, mentions) VALUES";
    for (int r = 0; r < n; ++r) {
      sql += r ? ",(" : "(";
      for (int c = 1; c <= 10; ++c) {
        sql += "?" + std::to_string(r * 10 + c);
        sql += c < 10 ? "," : ")";
      }
    }
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) !=
        SQLITE_OK)
      throw std::logic_error(std::string("bad SQL: ") + sqlite3_errmsg(db_) + " in " + sql);
    return s;
  }

  sqlite3_stmt* prepare(const char* sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return it->second;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
      throw std::logic_error(std::string("bad SQL: ") + sqlite3_errmsg(db_) + " in " + sql);
    cache_.emplace(sql, s);
    return s;
  }

  static void bind(sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  // For values that outlive the statement's step (every parameter is bound again before the
  // next one): no copy.
  static void bind_static(sqlite3_stmt* s, int i, std::string_view v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  static std::string col(sqlite3_stmt* s, int i) {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))) : std::string();
  }
  int step_done(sqlite3_stmt* s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_CONSTRAINT ? rc : (rc & 0xff) == SQLITE_CONSTRAINT ? SQLITE_CONSTRAINT : rc;
  }
  Status done(sqlite3_stmt* s, const char* what) {
    if (step_done(s) != SQLITE_DONE) return db_error(db_, what);
    return ok_status();
  }
  Status done_changed(sqlite3_stmt* s, const char* what, const char* not_found) {
    if (step_done(s) != SQLITE_DONE) return db_error(db_, what);
    if (sqlite3_changes(db_) == 0) return make_error(Errc::not_found, not_found);
    return ok_status();
  }
  Status cursor_upsert(sqlite3_stmt* s, const std::string& user, const std::string& device,
                       ConversationId id, Seq seq) {
    bind(s, 1, user);
    bind(s, 2, device);
    sqlite3_bind_int64(s, 3, id);
    sqlite3_bind_int64(s, 4, seq);
    return done(s, "cursor");
  }
  static User user_row(sqlite3_stmt* s) {
    User u;
    u.id = col(s, 0);
    u.name = col(s, 1);
    u.is_admin = sqlite3_column_int(s, 3) != 0;
    u.created_at_ms = sqlite3_column_int64(s, 4);
    u.direct_policy = parse_direct_policy(col(s, 5)).value_or(DirectPolicy::anyone);
    return u;
  }
  static Conversation conversation_row(sqlite3_stmt* s) {
    Conversation c;
    c.id = sqlite3_column_int64(s, 0);
    c.type = parse_conversation_type(col(s, 1)).value_or(ConversationType::group);
    c.name = col(s, 2);
    c.owner = col(s, 3);
    c.last_seq = sqlite3_column_int64(s, 4);
    c.created_at_ms = sqlite3_column_int64(s, 5);
    c.notice = col(s, 6);
    c.join_policy = parse_join_policy(col(s, 7)).value_or(JoinPolicy::approval);
    return c;
  }
  Result<std::vector<Message>> message_rows(sqlite3_stmt* s, ConversationId id, Seq bound,
                                            int64_t limit, bool reverse) {
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, bound);
    sqlite3_bind_int64(s, 3, limit);
    std::vector<Message> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      Message m;
      m.conversation_id = sqlite3_column_int64(s, 0);
      m.seq = sqlite3_column_int64(s, 1);
      m.publisher_id = col(s, 2);
      m.publisher_name = col(s, 3);
      m.type = parse_stored_message_type(col(s, 4)).value_or(MessageType::text);
      m.body = col(s, 5);
      m.client_msg_id = col(s, 6);
      m.ts_ms = sqlite3_column_int64(s, 7);
      if (sqlite3_column_type(s, 8) != SQLITE_NULL) {
        FileMeta f;
        f.id = col(s, 8);
        f.sha256 = col(s, 9);
        f.name = col(s, 10);
        f.mime = col(s, 11);
        f.size = sqlite3_column_int64(s, 12);
        f.uploader = col(s, 13);
        f.created_at_ms = sqlite3_column_int64(s, 14);
        m.file = std::move(f);
      }
      m.mentions = split_mentions(col(s, 15));
      out.push_back(std::move(m));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "messages");
    if (reverse) std::reverse(out.begin(), out.end());
    return out;
  }

  // Rows of user_id, conversation_id, seq, payload, attempts, at, last_error.
  Result<std::vector<PushRecord>> push_records(sqlite3_stmt* s, const char* what) {
    std::vector<PushRecord> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      out.push_back(PushRecord{col(s, 0), sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2),
                               col(s, 3), sqlite3_column_int64(s, 4), sqlite3_column_int64(s, 5),
                               col(s, 6)});
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, what);
    return out;
  }

  // A conversation's members, each with its role (the owner's is `owner`).
  Result<std::vector<Member>> members(ConversationId id, const std::string& owner) {
    auto* s = prepare(
        "SELECT user_id, muted, role FROM members WHERE conversation_id = ?1 ORDER BY joined_at, "
        "user_id");
    sqlite3_bind_int64(s, 1, id);
    std::vector<Member> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      Member m{col(s, 0), sqlite3_column_int(s, 1) != 0};
      m.role = store_text::member_role(owner, m.user_id, col(s, 2));
      out.push_back(std::move(m));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, "members");
    return out;
  }

  // A request's columns as request_insert and import_rows bind them (?1..?11).
  static void bind_request(sqlite3_stmt* s, const Request& r) {
    bind_static(s, 1, r.id);
    bind_static(s, 2, request_kind_name(r.kind));
    sqlite3_bind_int64(s, 3, r.conversation_id);
    bind_static(s, 4, r.user_id);
    bind_static(s, 5, r.from_id);
    bind_static(s, 6, r.text);
    bind_static(s, 7, request_status_name(r.status));
    bind_static(s, 8, r.decided_by);
    sqlite3_bind_int64(s, 9, r.created_at_ms);
    sqlite3_bind_int64(s, 10, r.decided_at_ms);
    sqlite3_bind_int64(s, 11, r.expires_at_ms);
  }

  // A row of kRequestSelect; fails on a kind or status the model has no name for.
  static Result<Request> request_row(sqlite3_stmt* s) {
    Request r;
    r.id = col(s, 0);
    auto kind = parse_request_kind(col(s, 1));
    auto status = parse_request_status(col(s, 6));
    if (!kind || !status)
      return make_error(Errc::internal, "request " + r.id + ": unknown kind '" + col(s, 1) +
                                            "' or status '" + col(s, 6) + "'");
    r.kind = *kind;
    r.conversation_id = sqlite3_column_int64(s, 2);
    r.user_id = col(s, 3);
    r.from_id = col(s, 4);
    r.text = col(s, 5);
    r.status = *status;
    r.decided_by = col(s, 7);
    r.created_at_ms = sqlite3_column_int64(s, 8);
    r.decided_at_ms = sqlite3_column_int64(s, 9);
    r.expires_at_ms = sqlite3_column_int64(s, 10);
    return r;
  }

  // Every row of a kRequestSelect statement with its parameters bound.
  Result<std::vector<Request>> request_rows(sqlite3_stmt* s, const char* what) {
    std::vector<Request> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      auto r = request_row(s);
      if (!r) {
        sqlite3_reset(s);
        return r.error();
      }
      out.push_back(std::move(r.value()));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, what);
    return out;
  }

  // Every row of a kRoomSelect statement with its parameters bound.
  Result<std::vector<Room>> room_rows(sqlite3_stmt* s, const char* what) {
    std::vector<Room> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      out.push_back(Room{static_cast<RoomId>(sqlite3_column_int64(s, 0)), col(s, 1), col(s, 2),
                         sqlite3_column_int64(s, 3), sqlite3_column_int64(s, 4),
                         sqlite3_column_int64(s, 5)});
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, what);
    return out;
  }

  // Every row of a statement that gives kRoomMemberColumns (a SELECT or a RETURNING), run to
  // its end.
  Result<std::vector<RoomMember>> room_member_rows(sqlite3_stmt* s, const char* what) {
    std::vector<RoomMember> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
      out.push_back(RoomMember{static_cast<RoomId>(sqlite3_column_int64(s, 0)), col(s, 1),
                               static_cast<uint32_t>(sqlite3_column_int64(s, 2)),
                               sqlite3_column_int(s, 3) != 0, col(s, 4), sqlite3_column_int64(s, 5),
                               sqlite3_column_int64(s, 6)});
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) return db_error(db_, what);
    return out;
  }

  // not_found unless the room exists (the row lock PostgreSQL takes here is the write lock).
  Status room_exists(RoomId id, const char* what) {
    auto* s = prepare("SELECT 1 FROM rooms WHERE id = ?1");
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) return make_error(Errc::not_found, "no such room");
    if (rc != SQLITE_ROW) return db_error(db_, what);
    return ok_status();
  }

  // An import's INSERT: a row that is there already, or that names a user or conversation
  // that is not, is a conflict, named by its table and key.
  Status import_step(sqlite3_stmt* s, const char* table, const std::string& key) {
    int rc = step_done(s);
    if (rc == SQLITE_DONE) return ok_status();
    return make_error(rc == SQLITE_CONSTRAINT ? Errc::conflict : Errc::internal,
                      std::string(table) + " " + key + ": " + sqlite3_errmsg(db_));
  }

  // One table into `sink`: `decode` appends the statement's row to the batch and returns about
  // how many bytes it holds (or fails on a value the model has no name for).
  template <class Decode>
  Status export_table(StoreRowSink& sink, const BatchLimits& limits, const char* sql,
                      const char* table, Decode decode) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &raw, nullptr) != SQLITE_OK) return db_error(db_, table);
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> s(raw, &sqlite3_finalize);
    StoreRows batch;
    std::size_t bytes = 0;
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      auto b = decode(s.get(), batch);
      if (!b) return make_error(b.error().code, std::string(table) + ": " + b.error().message);
      bytes += b.value();
      if (batch.size() >= std::max<std::size_t>(limits.max_rows, 1) || bytes >= limits.max_bytes) {
        if (auto st = sink.write(batch); !st) return st;
        batch.clear();
        bytes = 0;
      }
    }
    if (rc != SQLITE_DONE) return db_error(db_, table);
    if (batch.size() > 0)
      if (auto st = sink.write(batch); !st) return st;
    return ok_status();
  }

  Status export_tables(StoreRowSink& sink, const BatchLimits& limits) {
    constexpr std::size_t kRowBytes = 64;  // the integers and the row's own overhead, roughly
    if (auto st = export_table(sink, limits,
                               "SELECT id, name, password_hash, is_admin, created_at, "
                               "direct_policy FROM users ORDER BY id",
                               "users",
                               [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
                                 UserRecord r;
                                 r.user = user_row(s);
                                 if (!parse_direct_policy(col(s, 5)))
                                   return make_error(
                                       Errc::internal,
                                       r.user.id + ": unknown direct_policy '" + col(s, 5) + "'");
                                 r.password_hash = col(s, 2);
                                 const std::size_t n = kRowBytes + r.user.id.size() +
                                                       r.user.name.size() + r.password_hash.size();
                                 b.users.push_back(std::move(r));
                                 return n;
                               });
        !st)
      return st;
    if (auto st = export_table(
            sink, limits, "SELECT hash, user_id, device_id, expires_at FROM tokens ORDER BY hash",
            "tokens",
            [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
              TokenRow t{col(s, 0), col(s, 1), col(s, 2), sqlite3_column_int64(s, 3)};
              const std::size_t n =
                  kRowBytes + t.hash.size() + t.user_id.size() + t.device_id.size();
              b.tokens.push_back(std::move(t));
              return n;
            });
        !st)
      return st;
    if (auto st = export_table(
            sink, limits,
            "SELECT id, type, name, owner, last_seq, created_at, notice, join_policy, "
            "members_version, direct_key FROM conversations ORDER BY id",
            "conversations",
            [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
              ConversationRow r;
              r.conversation = conversation_row(s);
              if (!parse_conversation_type(col(s, 1)))
                return make_error(Errc::internal, std::to_string(r.conversation.id) +
                                                      ": unknown type '" + col(s, 1) + "'");
              if (!parse_join_policy(col(s, 7)))
                return make_error(Errc::internal, std::to_string(r.conversation.id) +
                                                      ": unknown join_policy '" + col(s, 7) + "'");
              r.conversation.members_version = sqlite3_column_int64(s, 8);
              r.direct_key = col(s, 9);
              const std::size_t n = kRowBytes + r.conversation.name.size() +
                                    r.conversation.owner.size() + r.direct_key.size() +
                                    r.conversation.notice.size();
              b.conversations.push_back(std::move(r));
              return n;
            });
        !st)
      return st;
    if (auto st =
            export_table(sink, limits,
                         "SELECT conversation_id, user_id, muted, joined_at, role FROM members "
                         "ORDER BY conversation_id, user_id",
                         "members",
                         [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
                           MemberRow m{sqlite3_column_int64(s, 0), col(s, 1),
                                       sqlite3_column_int(s, 2) != 0, sqlite3_column_int64(s, 3)};
                           auto role = parse_role(col(s, 4));
                           if (!role)
                             return make_error(Errc::internal,
                                               std::to_string(m.conversation_id) + "/" + m.user_id +
                                                   ": unknown role '" + col(s, 4) + "'");
                           m.role = *role;
                           const std::size_t n = kRowBytes + m.user_id.size();
                           b.members.push_back(std::move(m));
                           return n;
                         });
        !st)
      return st;
    if (auto st = export_table(
            sink, limits,
            "SELECT id, sha256, name, mime, size, uploader, created_at FROM files ORDER BY id",
            "files",
            [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
              FileMeta f{col(s, 0),
                         col(s, 1),
                         col(s, 2),
                         col(s, 3),
                         sqlite3_column_int64(s, 4),
                         col(s, 5),
                         sqlite3_column_int64(s, 6)};
              const std::size_t n = kRowBytes + f.id.size() + f.sha256.size() + f.name.size() +
                                    f.mime.size() + f.uploader.size();
              b.files.push_back(std::move(f));
              return n;
            });
        !st)
      return st;
    if (auto st = export_table(
            sink, limits,
            "SELECT conversation_id, seq, publisher_id, publisher_name, type, body, "
            "client_msg_id, file_id, ts, mentions FROM messages ORDER BY conversation_id, seq",
            "messages",
            [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
              MessageRow r;
              auto& m = r.message;
              m.conversation_id = sqlite3_column_int64(s, 0);
              m.seq = sqlite3_column_int64(s, 1);
              auto type = parse_stored_message_type(col(s, 4));
              if (!type)
                return make_error(Errc::internal, std::to_string(m.conversation_id) + "/" +
                                                      std::to_string(m.seq) + ": unknown type '" +
                                                      col(s, 4) + "'");
              m.type = *type;
              m.publisher_id = col(s, 2);
              m.publisher_name = col(s, 3);
              m.body = col(s, 5);
              m.client_msg_id = col(s, 6);
              r.file_id = col(s, 7);
              m.ts_ms = sqlite3_column_int64(s, 8);
              m.mentions = split_mentions(col(s, 9));
              const std::size_t n = kRowBytes + m.publisher_id.size() + m.publisher_name.size() +
                                    m.body.size() + m.client_msg_id.size() + r.file_id.size();
              b.messages.push_back(std::move(r));
              return n;
            });
        !st)
      return st;
    if (auto st = export_table(
            sink, limits,
            "SELECT user_id, device_id, conversation_id, acked, fetched FROM cursors "
            "ORDER BY user_id, device_id, conversation_id",
            "cursors",
            [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
              CursorRow c{col(s, 0), col(s, 1), sqlite3_column_int64(s, 2),
                          DeviceCursor{sqlite3_column_int64(s, 3), sqlite3_column_int64(s, 4)}};
              const std::size_t n = kRowBytes + c.user_id.size() + c.device_id.size();
              b.cursors.push_back(std::move(c));
              return n;
            });
        !st)
      return st;
    static const std::string requests = std::string(kRequestSelect) + "ORDER BY id";
    if (auto st = export_table(sink, limits, requests.c_str(), "requests",
                               [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
                                 auto r = request_row(s);
                                 if (!r) return r.error();
                                 const std::size_t n = kRowBytes + r->id.size() +
                                                       r->user_id.size() + r->from_id.size() +
                                                       r->text.size() + r->decided_by.size();
                                 b.requests.push_back(std::move(r.value()));
                                 return n;
                               });
        !st)
      return st;
    if (auto st = export_table(
            sink, limits, "SELECT user_a, user_b, since_ms FROM friends ORDER BY user_a, user_b",
            "friends",
            [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
              FriendRow f{col(s, 0), col(s, 1), sqlite3_column_int64(s, 2)};
              const std::size_t n = kRowBytes + f.user_a.size() + f.user_b.size();
              b.friends.push_back(std::move(f));
              return n;
            });
        !st)
      return st;
    // Rooms without their members (connections) and next_member_no (numbers start over).
    if (auto st = export_table(
            sink, limits,
            "SELECT id, name, owner, max_members, created_at_ms FROM rooms ORDER BY id", "rooms",
            [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
              Room r{static_cast<RoomId>(sqlite3_column_int64(s, 0)), col(s, 1), col(s, 2),
                     sqlite3_column_int64(s, 3), sqlite3_column_int64(s, 4)};
              const std::size_t n = kRowBytes + r.name.size() + r.owner.size();
              b.rooms.push_back(std::move(r));
              return n;
            });
        !st)
      return st;
    return export_table(
        sink, limits, "SELECT room_id, user_id FROM room_bans ORDER BY room_id, user_id",
        "room_bans", [](sqlite3_stmt* s, StoreRows& b) -> Result<std::size_t> {
          b.room_bans.emplace_back(static_cast<RoomId>(sqlite3_column_int64(s, 0)), col(s, 1));
          return kRowBytes + b.room_bans.back().second.size();
        });
  }

  static int on_wal_commit(void* self, sqlite3*, const char*, int frames) {
    auto& wal = *static_cast<SqliteSession*>(self)->wal_;
    wal.frames.store(frames, std::memory_order_relaxed);
    int woken = wal.woken_at.load(std::memory_order_relaxed);
    if (frames < woken) woken = 0;  // the WAL was restarted
    if (frames - woken >= wal.wake_frames) {
      wal.woken_at.store(frames, std::memory_order_relaxed);
      wal.cv.notify_one();
    }
    return SQLITE_OK;
  }

  sqlite3* db_;
  WalState* wal_;
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
  std::array<sqlite3_stmt*, kInsertRows + 1> insert_rows_{};  // by rows; see insert_messages
};

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(SqliteOptions o) : opts_(std::move(o)) {
    wal_.reset_frames = std::max(opts_.wal_reset_frames, 8);
    wal_.wake_frames = std::max(wal_.reset_frames / 2, 1);
    wal_.finish_frames = std::max(wal_.reset_frames / 16, 1);
  }
  ~SqliteStore() override {
    {
      std::lock_guard lk(wal_.mu);
      wal_.stopping = true;
    }
    wal_.cv.notify_all();
    if (checkpointer_.joinable()) checkpointer_.join();
  }
  std::string engine_name() const override { return "sqlite"; }

  // See WalState.
  Status start_checkpointer() {
    auto s = open_session();
    if (!s) return s.error();
    checkpointer_ = std::thread([this, session = std::move(s.value())]() mutable {
      name_this_thread("checkpointer");
      auto* db = static_cast<SqliteSession*>(session.get());
      std::unique_lock lk(wal_.mu);
      // Past reset_frames, a short pause after each pass: the writer's window to finish.
      bool past_reset = false;
      for (;;) {
        wal_.cv.wait_for(lk, std::chrono::milliseconds(past_reset ? 10 : 200));
        if (wal_.stopping) break;
        int frames = wal_.frames.load();
        if (frames == 0) continue;
        past_reset = frames > wal_.reset_frames;
        if (past_reset && frames - wal_.backfilled.load() <= wal_.finish_frames)
          continue;  // the writer's turn
        wal_.checkpointing.store(true);
        lk.unlock();
        const int before = wal_.backfilled.load();
        int done = db->wal_checkpoint(SQLITE_CHECKPOINT_PASSIVE).second;
        if (done >= 0) wal_.backfilled.store(done);
        if (done > before) db->sync_database();
        lk.lock();
        wal_.checkpointing.store(false);
        wal_.pass_done.notify_all();
      }
      lk.unlock();
      (void)db->wal_checkpoint(SQLITE_CHECKPOINT_TRUNCATE);  // leave a small WAL behind at exit
    });
    return ok_status();
  }

  Result<std::unique_ptr<StoreSession>> open_session() override {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(opts_.path.c_str(), &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             sqlite_vfs::name());
    if (rc != SQLITE_OK) {
      std::string m = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close_v2(db);
      return make_error(Errc::internal, "cannot open " + opts_.path + ": " + m);
    }
    auto session = std::make_unique<SqliteSession>(db, &wal_);
    sqlite3_busy_timeout(db, 5000);
    std::string pragmas =
        "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
        // Pages are read through a memory map, and 16 MiB of cache per connection keeps the
        // hot B-tree pages that live in the WAL (read with a pread each) in memory. Not more:
        // after a commit whose page splits borrowed a page number past the end (SQLite's
        // balance_nonroot does), the commit scans the whole cache, 7 % of the writer's time
        // at 64 MiB (docs/benchmarks.md, section 2). A reader's cache is emptied by SQLite
        // whenever the WAL moved on, so a larger one would not serve readers either. The temp
        // store (sub-journals of savepoints) is memory.
        "PRAGMA mmap_size=1073741824; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY; "
        "PRAGMA synchronous=";
    pragmas += opts_.synchronous_full ? "FULL;" : "NORMAL;";
    if (auto s = session->exec(pragmas.c_str()); !s) return s.error();
    session->watch_wal();  // and no auto-checkpoint: see WalState
    return std::unique_ptr<StoreSession>(std::move(session));
  }

  Status migrate() {
    auto s = open_session();
    if (!s) return s.error();
    auto* db = static_cast<SqliteSession*>(s.value().get());
    if (auto st = db->exec("BEGIN IMMEDIATE"); !st) return st;
    // user_version is the count of migrations applied.
    auto v = read_user_version(db);
    if (!v) {
      db->rollback();
      return v.error();
    }
    const int version = v.value();
    const int total = static_cast<int>(std::size(kMigrations));
    for (int i = version; i < total; ++i) {
      if (auto st = db->exec(kMigrations[i]); !st) {
        db->rollback();
        return make_error(Errc::internal,
                          "migration " + std::to_string(i + 1) + ": " + st.error().message);
      }
    }
    std::string set = "PRAGMA user_version=" + std::to_string(total);
    if (auto st = db->exec(set.c_str()); !st) {
      db->rollback();
      return st;
    }
    return db->commit();
  }

 private:
  static Result<int> read_user_version(SqliteSession* db) {
    int version = -1;
    auto cb = [](void* out, int, char** vals, char**) {
      *static_cast<int*>(out) = vals[0] ? std::atoi(vals[0]) : 0;
      return 0;
    };
    if (auto st = db->exec_with("PRAGMA user_version", cb, &version); !st) return st.error();
    return version;
  }

  SqliteOptions opts_;
  WalState wal_;
  std::thread checkpointer_;
};

// In WAL mode every connection holds a shared lock on the database file for as long as it is
// open, idle or not. A connection in EXCLUSIVE locking mode wants that file to itself at its
// first transaction: it gets it only when no other connection, in any process, is open. Run
// before this process opens any connection of its own (those would count too).
Status check_not_in_use(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(db);
    return ok_status();  // no database yet: nobody uses it (opening it reports other errors)
  }
  char* err = nullptr;
  const int rc = sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;",
                              nullptr, nullptr, &err);
  std::string m = err ? err : "";
  sqlite3_free(err);
  sqlite3_close_v2(db);
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
    return make_error(Errc::unavailable, path +
                                             " is open in another process (a running node?): "
                                             "stop it first");
  if (rc != SQLITE_OK) return make_error(Errc::internal, "cannot open " + path + ": " + m);
  return ok_status();
}

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const SqliteOptions& opts) {
  // Before SQLite initializes: without memory statistics its allocator takes no global mutex
  // (a lock and unlock per allocation, shared by every connection, otherwise).
  static std::once_flag configured;
  std::call_once(configured, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  if (opts.fail_if_in_use)
    if (auto st = check_not_in_use(opts.path); !st) return st.error();
  auto store = std::make_unique<SqliteStore>(opts);
  if (auto st = store->migrate(); !st) return st.error();
  if (auto st = store->start_checkpointer(); !st) return st.error();
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace converge
