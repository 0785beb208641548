// The store suite, written once and run against every engine (a typed test per engine).
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <span>
#include <thread>
#include <vector>

#include "store/sqlite/sqlite_store.hpp"
#ifdef CONVERGE_STORE_TEST_POSTGRES
#include "store/postgres/postgres_store.hpp"
#include "store/postgres/test_server.hpp"
#endif

using namespace converge;

namespace {

// An engine of the typed suite: opens a fresh, empty store per test and cleans up after it.
struct SqliteEngine {
  static constexpr const char* name = "Sqlite";
  static std::string skip_reason() { return ""; }
  static void close() {}
  static Result<std::unique_ptr<Store>> open() {
    static int n = 0;
    auto dir = std::filesystem::path(::testing::TempDir()) /
               ("converge_store_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return open_sqlite_store(SqliteOptions{(dir / "t.db").string(), false});
  }
};

#ifdef CONVERGE_STORE_TEST_POSTGRES
// A new database per test on the binary's one server (see postgres/test_server.hpp).
struct PostgresEngine {
  static constexpr const char* name = "Postgres";
  static std::string skip_reason() { return pgtest::skip_reason(); }
  static Result<std::unique_ptr<Store>> open() {
    auto db = pgtest::create_database();
    if (!db) return db.error();
    database() = db.value().name;
    return open_postgres_store(PostgresOptions{db.value().url});
  }
  static void close() {
    if (database().empty()) return;
    (void)pgtest::drop_database(database());
    database().clear();
  }
  static std::string& database() {
    static std::string name;
    return name;
  }
};
#endif

template <class Engine>
class StoreSuite : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = Engine::skip_reason(); !why.empty()) GTEST_SKIP() << why;
    auto st = Engine::open();
    ASSERT_TRUE(st) << st.error().message;
    store_ = std::move(st.value());
    auto s = store_->open_session();
    ASSERT_TRUE(s);
    s_ = std::move(s.value());
    for (auto id : {"alice", "bob", "carol"})
      ASSERT_TRUE(s_->create_user(User{id, id, false, 1}, "h"));
  }

  void TearDown() override {
    s_.reset();
    store_.reset();
    Engine::close();
  }

  ConversationId make_group(std::vector<std::string> members) {
    Conversation c;
    c.type = ConversationType::group;
    c.name = "g";
    c.owner = members.front();
    c.created_at_ms = 1;
    for (auto& m : members) c.members.push_back(Member{m, false});
    auto id = s_->create_conversation(c, "");
    EXPECT_TRUE(id);
    return id.value();
  }

  Message append(ConversationId id, const std::string& from, const std::string& body,
                 const std::string& cmid = "") {
    EXPECT_TRUE(s_->begin());
    auto last = s_->lock_last_seq(id);
    EXPECT_TRUE(last);
    Message m;
    m.conversation_id = id;
    m.seq = last.value() + 1;
    m.publisher_id = from;
    m.publisher_name = from;
    m.body = body;
    m.client_msg_id = cmid;
    m.ts_ms = 100 + m.seq;
    auto stored = s_->insert_message(m, "");
    EXPECT_TRUE(stored && stored.value());
    EXPECT_TRUE(s_->set_last_seq(id, m.seq));
    EXPECT_TRUE(s_->commit());
    return m;
  }

  // Voice rooms: a room of alice's; a join and a removal each in a transaction of their own,
  // as the writer runs them (undone when they fail).
  RoomId make_room(const std::string& name, int64_t max_members = 50,
                   const std::string& owner = "alice") {
    auto id = s_->room_create(Room{0, name, owner, max_members, 7, 0});
    EXPECT_TRUE(id) << id.error().message;
    return id ? id.value() : 0;
  }
  Result<StoreSession::RoomJoin> join(RoomId room, const std::string& user, const std::string& node,
                                      int64_t conn, int64_t now = 100) {
    EXPECT_TRUE(s_->begin());
    auto r = s_->room_join(room, user, node, conn, now);
    if (r)
      EXPECT_TRUE(s_->commit());
    else
      s_->rollback();
    return r;
  }
  Result<std::optional<RoomMember>> remove(RoomId room, const std::string& user) {
    EXPECT_TRUE(s_->begin());
    auto r = s_->room_remove(room, user);
    if (r)
      EXPECT_TRUE(s_->commit());
    else
      s_->rollback();
    return r;
  }
  // "user#no@node/conn" per member, by member_no ("+muted" when muted).
  std::string members_of(RoomId room) {
    auto r = s_->room_members(room);
    EXPECT_TRUE(r) << r.error().message;
    return r ? show_members(r.value()) : "";
  }
  static std::string show_member(const RoomMember& m) {
    return std::to_string(m.room_id) + ":" + m.user_id + "#" + std::to_string(m.member_no) +
           (m.muted ? "+muted" : "") + "@" + m.node_id + "/" + std::to_string(m.conn_id) + "(" +
           std::to_string(m.joined_at_ms) + ")";
  }
  static std::string show_members(const std::vector<RoomMember>& v) {
    std::string out;
    for (auto& m : v) out += show_member(m) + " ";
    return out;
  }

  std::unique_ptr<Store> store_;
  std::unique_ptr<StoreSession> s_;
};

#ifdef CONVERGE_STORE_TEST_POSTGRES
using Engines = ::testing::Types<SqliteEngine, PostgresEngine>;
#else
using Engines = ::testing::Types<SqliteEngine>;
#endif
struct EngineNames {
  template <class Engine>
  static std::string GetName(int) {
    return Engine::name;
  }
};
TYPED_TEST_SUITE(StoreSuite, Engines, EngineNames);

TYPED_TEST(StoreSuite, UsersAreUniqueAndFound) {
  auto& s = *this->s_;
  auto dup = s.create_user(User{"alice", "A", false, 1}, "h");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::conflict);
  auto u = s.find_user("alice");
  ASSERT_TRUE(u && u.value());
  EXPECT_EQ(u.value()->password_hash, "h");
  EXPECT_FALSE(s.find_user("nobody").value());
  ASSERT_TRUE(s.set_admin("bob", true));
  EXPECT_TRUE(s.find_user("bob").value()->user.is_admin);
  EXPECT_EQ(s.set_admin("nobody", true).error().code, Errc::not_found);
  auto admins = s.list_admins();
  ASSERT_TRUE(admins);
  ASSERT_EQ(admins.value().size(), 1u);
  EXPECT_EQ(admins.value()[0].id, "bob");
}

TYPED_TEST(StoreSuite, PresenceRowsBelongToTheirNode) {
  auto& s = *this->s_;
  std::vector<PresenceRow> rows{{"n1", 1, "alice", "phone", "ws", 10},
                                {"n1", 2, "alice", "laptop", "mqtt", 11},
                                {"n2", 1, "alice", "tablet", "ws", 12},
                                {"n2", 2, "bob", "phone", "ws", 13}};
  ASSERT_TRUE(s.presence_put(rows));
  std::vector<std::string> who{"alice", "carol"};
  auto got = s.presence_of(who);
  ASSERT_TRUE(got);
  ASSERT_EQ(got.value().size(), 3u);
  EXPECT_EQ(got.value()[0].node_id, "n1");
  EXPECT_EQ(got.value()[1].device_id, "laptop");
  EXPECT_EQ(got.value()[1].protocol, "mqtt");
  EXPECT_EQ(got.value()[2].since_ms, 12);
  // A put with the same key replaces the row; a drop takes only the named connections.
  std::vector<PresenceRow> again{{"n1", 2, "alice", "laptop", "ws", 20}};
  ASSERT_TRUE(s.presence_put(again));
  std::vector<int64_t> gone{1};
  ASSERT_TRUE(s.presence_drop("n1", gone));
  got = s.presence_of(who);
  ASSERT_EQ(got.value().size(), 2u);
  EXPECT_EQ(got.value()[0].conn_id, 2);
  EXPECT_EQ(got.value()[0].protocol, "ws");
  EXPECT_EQ(got.value()[0].since_ms, 20);
  // A node's rows all go at once; the others stay.
  ASSERT_TRUE(s.presence_clear("n2"));
  std::vector<std::string> both{"alice", "bob"};
  got = s.presence_of(both);
  ASSERT_EQ(got.value().size(), 1u);
  EXPECT_EQ(got.value()[0].node_id, "n1");
  EXPECT_TRUE(s.presence_put(std::span<const PresenceRow>{}));
  EXPECT_TRUE(s.presence_drop("n1", std::span<const int64_t>{}));
}

TYPED_TEST(StoreSuite, MqttSessionsKeepSubscriptionsAndExpire) {
  auto& s = *this->s_;
  auto sub = [](std::string f, uint8_t qos, uint32_t id = 0) {
    MqttSubRow r;
    r.filter = std::move(f);
    r.qos = qos;
    r.subscription_id = id;
    return r;
  };
  MqttSessionWrite a;
  a.client_id = "alice-phone";
  a.row = MqttSessionRow{"alice-phone", "alice", 3600, 0, "n1", {}};
  a.reset_subs = true;
  a.subs.emplace_back("user/alice/#", sub("user/alice/#", 1));
  a.subs.emplace_back("news/+", sub("news/+", 2, 7));
  MqttSessionWrite b;
  b.client_id = "anon";
  b.row = MqttSessionRow{"anon", "", 10, 1000, "n2", {}};
  b.subs.emplace_back("x", sub("x", 0));
  // A subscription of a session that has no row is not kept.
  MqttSessionWrite orphan;
  orphan.client_id = "ghost";
  orphan.subs.emplace_back("y", sub("y", 1));
  std::vector<MqttSessionWrite> w{a, b, orphan};
  ASSERT_TRUE(s.begin());
  ASSERT_TRUE(s.mqtt_sessions_write(w));
  ASSERT_TRUE(s.commit());

  auto got = s.mqtt_session_get("alice-phone");
  ASSERT_TRUE(got);
  ASSERT_TRUE(got.value().has_value());
  EXPECT_EQ(got.value()->user_id, "alice");
  EXPECT_EQ(got.value()->expiry_s, 3600);
  EXPECT_EQ(got.value()->disconnected_at_ms, 0);
  ASSERT_EQ(got.value()->subs.size(), 2u);
  EXPECT_EQ(got.value()->subs[0].filter, "news/+");
  EXPECT_EQ(got.value()->subs[0].qos, 2);
  EXPECT_EQ(got.value()->subs[0].subscription_id, 7u);
  EXPECT_EQ(got.value()->subs[1].filter, "user/alice/#");
  EXPECT_FALSE(s.mqtt_session_get("ghost").value().has_value());

  // A change drops one subscription and puts another; a reset replaces them all.
  MqttSessionWrite c;
  c.client_id = "alice-phone";
  c.subs.emplace_back("news/+", std::nullopt);
  c.subs.emplace_back("group/7/#", sub("group/7/#", 1));
  std::vector<MqttSessionWrite> w2{c};
  ASSERT_TRUE(s.mqtt_sessions_write(w2));
  got = s.mqtt_session_get("alice-phone");
  ASSERT_EQ(got.value()->subs.size(), 2u);
  EXPECT_EQ(got.value()->subs[0].filter, "group/7/#");
  MqttSessionWrite d;
  d.client_id = "alice-phone";
  d.row = MqttSessionRow{"alice-phone", "alice", 60, 0, "n1", {}};
  d.reset_subs = true;
  std::vector<MqttSessionWrite> w3{d};
  ASSERT_TRUE(s.mqtt_sessions_write(w3));
  got = s.mqtt_session_get("alice-phone");
  EXPECT_EQ(got.value()->expiry_s, 60);
  EXPECT_TRUE(got.value()->subs.empty());

  // n1's connected sessions count as disconnected when it starts again; expiry then runs.
  ASSERT_TRUE(s.mqtt_sessions_release("n1", 5000));
  EXPECT_EQ(s.mqtt_session_get("alice-phone").value()->disconnected_at_ms, 5000);
  EXPECT_EQ(s.mqtt_sessions_expire(10999).value(), 0);
  auto n = s.mqtt_sessions_expire(11000);  // anon: 1000 + 10 s
  ASSERT_TRUE(n);
  EXPECT_EQ(n.value(), 1);
  EXPECT_FALSE(s.mqtt_session_get("anon").value().has_value());
  EXPECT_TRUE(s.mqtt_session_get("alice-phone").value().has_value());
  EXPECT_EQ(s.mqtt_sessions_expire(64999).value(), 0);
  EXPECT_EQ(s.mqtt_sessions_expire(65000).value(), 1);
  EXPECT_FALSE(s.mqtt_session_get("alice-phone").value().has_value());
  // A sole node releases every connected session, whichever node id it had.
  std::vector<MqttSessionWrite> w6{a};
  ASSERT_TRUE(s.mqtt_sessions_write(w6));
  ASSERT_TRUE(s.mqtt_sessions_release("n9", 7000));
  EXPECT_EQ(s.mqtt_session_get("alice-phone").value()->disconnected_at_ms, 0);
  ASSERT_TRUE(s.mqtt_sessions_release("", 7000));
  EXPECT_EQ(s.mqtt_session_get("alice-phone").value()->disconnected_at_ms, 7000);

  // An erase takes the row and its subscriptions.
  std::vector<MqttSessionWrite> w4{b};
  ASSERT_TRUE(s.mqtt_sessions_write(w4));
  MqttSessionWrite e;
  e.client_id = "anon";
  e.erase = true;
  std::vector<MqttSessionWrite> w5{e};
  ASSERT_TRUE(s.mqtt_sessions_write(w5));
  EXPECT_FALSE(s.mqtt_session_get("anon").value().has_value());
  ASSERT_TRUE(s.mqtt_sessions_write(w4));  // back, without the old subscription rows
  EXPECT_EQ(s.mqtt_session_get("anon").value()->subs.size(), 1u);
}

TYPED_TEST(StoreSuite, SharedMembersAreThoseInAConversationWithTheUser) {
  auto& s = *this->s_;
  this->make_group({"alice", "bob"});
  std::vector<std::string> others{"bob", "carol", "bob", "nobody"};
  auto got = s.shared_members("alice", others);
  ASSERT_TRUE(got);
  EXPECT_EQ(got.value(), std::vector<std::string>{"bob"});
  EXPECT_TRUE(s.shared_members("carol", others).value().empty());
}

TYPED_TEST(StoreSuite, TokensExpire) {
  auto& s = *this->s_;
  ASSERT_TRUE(s.insert_token("t1", "alice", "phone", 1000));
  auto a = s.find_token("t1", 999);
  ASSERT_TRUE(a && a.value());
  EXPECT_EQ(a.value()->user_id, "alice");
  EXPECT_EQ(a.value()->device_id, "phone");
  EXPECT_FALSE(s.find_token("t1", 1000).value());  // expired at its expiry
  EXPECT_FALSE(s.find_token("t2", 0).value());
  ASSERT_TRUE(s.delete_expired_tokens(2000));
  EXPECT_FALSE(s.find_token("t1", 0).value());
}

TYPED_TEST(StoreSuite, AUsersTokensGoAllButOne) {
  auto& s = *this->s_;
  ASSERT_TRUE(s.insert_token("a1", "alice", "phone", 1000));
  ASSERT_TRUE(s.insert_token("a2", "alice", "laptop", 1000));
  ASSERT_TRUE(s.insert_token("b1", "bob", "phone", 1000));
  EXPECT_EQ(s.delete_user_tokens("alice", "a1").value(), 1);
  EXPECT_TRUE(s.find_token("a1", 0).value());
  EXPECT_FALSE(s.find_token("a2", 0).value());
  EXPECT_EQ(s.delete_user_tokens("alice", "").value(), 1);
  EXPECT_FALSE(s.find_token("a1", 0).value());
  EXPECT_TRUE(s.find_token("b1", 0).value());
  EXPECT_EQ(s.delete_user_tokens("carol", "").value(), 0);
}

TYPED_TEST(StoreSuite, ConversationsComeInPagesAndGroupsAreCounted) {
  auto& s = *this->s_;
  std::vector<ConversationId> groups;
  for (int i = 0; i < 3; ++i) groups.push_back(this->make_group({"alice", "bob", "carol"}));
  auto other = this->make_group({"bob", "carol"});
  Conversation d;
  d.type = ConversationType::direct;
  d.owner = "alice";
  d.members = {{"alice", false}, {"bob", false}};
  auto direct = s.create_conversation(d, "alice|bob").value();
  EXPECT_EQ(s.count_groups("alice").value(), 3);
  EXPECT_EQ(s.count_groups("carol").value(), 4);
  EXPECT_EQ(s.count_groups("nobody").value(), 0);
  auto first = s.list_conversations_page("alice", 0, 2).value();
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].id, groups[0]);
  EXPECT_EQ(first[1].id, groups[1]);
  EXPECT_EQ(first[1].members.size(), 3u);
  auto rest = s.list_conversations_page("alice", first[1].id, 10).value();
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].id, groups[2]);
  EXPECT_EQ(rest[1].id, direct);
  EXPECT_EQ(rest[1].members.size(), 2u);
  EXPECT_NE(rest[1].id, other);
  EXPECT_TRUE(s.list_conversations_page("alice", direct, 10).value().empty());
}

// Every membership change bumps the version that a writer reads under its row lock (a writer on
// another node learns from it that its cached members are stale); messages do not.
TYPED_TEST(StoreSuite, MembershipChangesBumpTheVersion) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob"});
  ASSERT_TRUE(s.begin());
  auto v0 = s.lock_conversation(id).value().members_version;
  ASSERT_TRUE(s.commit());
  EXPECT_EQ(s.get_conversation(id).value()->members_version, v0);
  ASSERT_TRUE(s.add_member(id, "carol", 1));
  auto v1 = s.get_conversation(id).value()->members_version;
  EXPECT_GT(v1, v0);
  ASSERT_TRUE(s.add_member(id, "carol", 2));  // already in: no change
  EXPECT_EQ(s.get_conversation(id).value()->members_version, v1);
  ASSERT_TRUE(s.remove_member(id, "bob"));
  auto v2 = s.get_conversation(id).value()->members_version;
  EXPECT_GT(v2, v1);
  ASSERT_TRUE(s.begin());
  auto lock = s.lock_conversation(id).value();
  EXPECT_EQ(lock.members_version, v2);
  EXPECT_EQ(lock.last_seq, 0);
  ASSERT_TRUE(s.set_last_seq(id, 1));
  ASSERT_TRUE(s.commit());
  EXPECT_EQ(s.get_conversation(id).value()->members_version, v2);
}

TYPED_TEST(StoreSuite, DirectConversationIsUniquePerPair) {
  auto& s = *this->s_;
  Conversation c;
  c.type = ConversationType::direct;
  c.owner = "alice";
  c.members = {{"alice", false}, {"bob", false}};
  auto id = s.create_conversation(c, "alice|bob");
  ASSERT_TRUE(id);
  auto again = s.create_conversation(c, "alice|bob");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::conflict);
  EXPECT_EQ(s.find_direct("alice|bob").value().value(), id.value());
  EXPECT_FALSE(s.find_direct("alice|carol").value());
}

TYPED_TEST(StoreSuite, MembershipChanges) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob"});
  ASSERT_TRUE(s.add_member(id, "carol", 5));
  ASSERT_TRUE(s.add_member(id, "carol", 6));  // idempotent
  auto c = s.get_conversation(id);
  ASSERT_TRUE(c && c.value());
  EXPECT_EQ(c.value()->members.size(), 3u);
  EXPECT_EQ(s.list_conversations("carol").value().size(), 1u);
  ASSERT_TRUE(s.remove_member(id, "bob"));
  EXPECT_EQ(s.remove_member(id, "bob").error().code, Errc::not_found);
  EXPECT_TRUE(s.list_conversations("bob").value().empty());
  ASSERT_TRUE(s.set_muted(id, "carol", true));
  auto after = s.get_conversation(id).value().value();
  bool muted = false;
  for (auto& m : after.members)
    if (m.user_id == "carol") muted = m.muted;
  EXPECT_TRUE(muted);
  EXPECT_FALSE(s.get_conversation(id + 100).value());
  ASSERT_TRUE(s.set_owner(id, "carol"));
  EXPECT_EQ(s.get_conversation(id).value()->owner, "carol");
  EXPECT_EQ(s.set_owner(id + 100, "carol").error().code, Errc::not_found);
}

TYPED_TEST(StoreSuite, SeqsAreGaplessAndPagesAscend) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob"});
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(this->append(id, "alice", "m" + std::to_string(i)).seq, i);
  EXPECT_EQ(s.get_conversation(id).value()->last_seq, 5);
  auto after = s.messages_after(id, 2, 2).value();
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0].seq, 3);
  EXPECT_EQ(after[1].seq, 4);
  auto before = s.messages_before(id, 5, 2).value();
  ASSERT_EQ(before.size(), 2u);
  EXPECT_EQ(before[0].seq, 3);
  EXPECT_EQ(before[1].seq, 4);
  ASSERT_TRUE(s.begin());
  EXPECT_EQ(s.lock_last_seq(id + 100).error().code, Errc::not_found);
  EXPECT_EQ(s.set_last_seq(id + 100, 1).error().code, Errc::not_found);
  s.rollback();
}

TYPED_TEST(StoreSuite, RolledBackSeqIsReused) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob"});
  this->append(id, "alice", "one");
  ASSERT_TRUE(s.begin());
  EXPECT_EQ(s.lock_last_seq(id).value(), 1);
  ASSERT_TRUE(s.set_last_seq(id, 2));
  EXPECT_EQ(s.lock_last_seq(id).value(), 2);
  s.rollback();
  EXPECT_EQ(this->append(id, "alice", "two").seq, 2);
}

TYPED_TEST(StoreSuite, SavepointUndoesOnlyItsPart) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob"});
  ASSERT_TRUE(s.begin());
  ASSERT_TRUE(s.set_last_seq(id, 1));
  ASSERT_TRUE(s.savepoint());
  ASSERT_TRUE(s.set_last_seq(id, 2));
  s.rollback_to_savepoint();
  EXPECT_EQ(s.lock_last_seq(id).value(), 1);
  ASSERT_TRUE(s.commit());
  EXPECT_EQ(s.get_conversation(id).value()->last_seq, 1);
}

// The writer's batch: a job that fails under its savepoint is undone alone and the rest of the
// transaction commits (on PostgreSQL the failure aborted the transaction until the rollback).
TYPED_TEST(StoreSuite, AFailedJobUnderASavepointSparesTheBatch) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob"});
  ASSERT_TRUE(s.begin());
  ASSERT_TRUE(s.set_last_seq(id, 3));
  ASSERT_TRUE(s.savepoint());
  auto dup = s.create_user(User{"alice", "A", false, 1}, "h");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::conflict);
  s.rollback_to_savepoint();
  ASSERT_TRUE(s.savepoint());
  ASSERT_TRUE(s.create_user(User{"dave", "D", false, 1}, "h"));
  ASSERT_TRUE(s.release_savepoint());
  ASSERT_TRUE(s.commit());
  EXPECT_EQ(s.get_conversation(id).value()->last_seq, 3);
  EXPECT_TRUE(s.find_user("dave").value());
}

TYPED_TEST(StoreSuite, ClientMsgIdIdentifiesARetry) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob"});
  auto m = this->append(id, "alice", "hi", "c-1");
  auto ref = s.find_sent("alice", "c-1");
  ASSERT_TRUE(ref && ref.value());
  EXPECT_EQ(ref.value()->seq, m.seq);
  EXPECT_FALSE(s.find_sent("bob", "c-1").value());  // scoped to the publisher
  ASSERT_TRUE(s.begin());
  Message dup = m;
  dup.seq = s.lock_last_seq(id).value() + 1;
  dup.body = "again";
  EXPECT_FALSE(s.insert_message(dup, "").value());  // a retry: nothing written
  dup.publisher_id = "bob";                         // another publisher's c-1 is another message
  EXPECT_TRUE(s.insert_message(dup, "").value());
  s.rollback();
  auto all = s.messages_after(id, 0, 10).value();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].body, "hi");
}

// The writer's batched calls: one statement per batch on PostgreSQL, loops on SQLite.
TYPED_TEST(StoreSuite, ConversationsLockAndTakeTheirSeqsInOneCall) {
  auto& s = *this->s_;
  auto a = this->make_group({"alice", "bob"});
  auto b = this->make_group({"alice", "carol"});
  this->append(b, "alice", "one");
  ASSERT_TRUE(s.begin());
  const std::vector<ConversationId> ids{a, b, b + 100};  // the last does not exist
  auto locks = s.lock_conversations(ids);
  ASSERT_TRUE(locks) << locks.error().message;
  ASSERT_EQ(locks->size(), 2u);
  EXPECT_EQ((*locks)[0].id, a);
  EXPECT_EQ((*locks)[0].last_seq, 0);
  EXPECT_EQ((*locks)[1].id, b);
  EXPECT_EQ((*locks)[1].last_seq, 1);
  EXPECT_EQ((*locks)[1].members_version, s.lock_conversation(b)->members_version);
  EXPECT_TRUE(s.lock_conversations(std::vector<ConversationId>{})->empty());
  const std::vector<LastSeq> tops{{a, 7}, {b, 9}};
  ASSERT_TRUE(s.set_last_seqs(tops));
  ASSERT_TRUE(s.commit());
  EXPECT_EQ(s.get_conversation(a).value()->last_seq, 7);
  EXPECT_EQ(s.get_conversation(b).value()->last_seq, 9);
  ASSERT_TRUE(s.begin());
  const std::vector<LastSeq> bad{{a, 8}, {b + 100, 1}};
  EXPECT_EQ(s.set_last_seqs(bad).error().code, Errc::not_found);
  s.rollback();
  EXPECT_EQ(s.get_conversation(a).value()->last_seq, 7);
}

TYPED_TEST(StoreSuite, MessagesGoInInOneCallAndRetriesAreNotStored) {
  auto& s = *this->s_;
  auto a = this->make_group({"alice", "bob"});
  auto b = this->make_group({"alice", "carol"});
  this->append(a, "alice", "first", "c-1");  // seq 1 of a, stored by an earlier batch
  ASSERT_TRUE(s.insert_file(FileMeta{"f1", "sha", "pic.png", "image/png", 3, "alice", 1}));
  auto msg = [](ConversationId id, Seq seq, const std::string& from, const std::string& body,
                const std::string& cmid) {
    Message m;
    m.conversation_id = id;
    m.seq = seq;
    m.publisher_id = from;
    m.publisher_name = from;
    m.body = body;
    m.client_msg_id = cmid;
    m.ts_ms = 1000 + seq;
    return m;
  };
  ASSERT_TRUE(s.begin());
  std::vector<Message> batch{
      msg(a, 2, "alice", "two", "c-2"),
      msg(b, 1, "carol", "b-one", "c-1"),  // carol's c-1 is not alice's
      msg(a, 3, "alice", "again", "c-1"),  // across batches: alice's c-1 is stored
      msg(a, 4, "bob", "no id", ""),       // no client_msg_id: never a retry
      msg(b, 2, "alice", "file", "c-3"),   // with a file
      msg(b, 3, "alice", "twice", "c-3"),  // inside the batch: the same as the one before
      msg(a, 1, "bob", "taken", "c-9"),    // seq 1 of a is stored
  };
  const std::vector<std::string> files{"", "", "", "", "f1", "", ""};
  auto r = s.insert_messages(batch, files);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r.value(), (std::vector<bool>{true, true, false, true, true, false, false}));
  EXPECT_TRUE(
      s.insert_messages(std::span<const Message>{}, std::span<const std::string>{})->empty());

  const std::vector<SentKey> keys{
      {"alice", "c-1"}, {"alice", "nope"}, {"carol", "c-1"}, {"alice", "c-3"}, {"bob", "c-1"}};
  auto found = s.find_sent_many(keys);
  ASSERT_TRUE(found) << found.error().message;
  ASSERT_EQ(found->size(), keys.size());
  ASSERT_TRUE((*found)[0]);
  EXPECT_EQ((*found)[0]->conversation_id, a);
  EXPECT_EQ((*found)[0]->seq, 1);
  EXPECT_FALSE((*found)[1]);
  ASSERT_TRUE((*found)[2]);
  EXPECT_EQ((*found)[2]->conversation_id, b);
  EXPECT_EQ((*found)[2]->seq, 1);
  EXPECT_EQ((*found)[2]->ts_ms, 1001);
  ASSERT_TRUE((*found)[3]);
  EXPECT_EQ((*found)[3]->seq, 2);
  EXPECT_FALSE((*found)[4]);
  EXPECT_TRUE(s.find_sent_many(std::vector<SentKey>{})->empty());
  ASSERT_TRUE(s.commit());

  auto in_a = s.messages_after(a, 0, 10).value();
  ASSERT_EQ(in_a.size(), 3u);
  EXPECT_EQ(in_a[1].body, "two");
  EXPECT_EQ(in_a[2].body, "no id");
  EXPECT_EQ(in_a[2].client_msg_id, "");
  auto in_b = s.messages_after(b, 0, 10).value();
  ASSERT_EQ(in_b.size(), 2u);
  EXPECT_EQ(in_b[0].body, "b-one");
  ASSERT_TRUE(in_b[1].file);
  EXPECT_EQ(in_b[1].file->name, "pic.png");
  EXPECT_TRUE(s.file_accessible("f1", "carol").value());
}

// More messages than one statement takes (SQLite's insert_messages puts 32 in each): the
// answers stay exact past the first statement, a refused row in the last one leaves the others
// stored, and move_message closes the gap it left (what the writer does next).
TYPED_TEST(StoreSuite, ManyMessagesInOneCallThenAGapClosed) {
  auto& s = *this->s_;
  auto a = this->make_group({"alice", "bob"});
  this->append(a, "alice", "first", "c-0");  // seq 1
  std::vector<Message> batch;
  for (int i = 0; i < 70; ++i) {
    Message m;
    m.conversation_id = a;
    m.seq = 2 + i;
    m.publisher_id = m.publisher_name = i % 2 ? "bob" : "alice";
    m.body = "m" + std::to_string(i);
    m.client_msg_id = "c-" + std::to_string(i + 1);
    m.ts_ms = 2000 + i;
    batch.push_back(m);
  }
  batch[40].publisher_id = batch[40].publisher_name = "alice";
  batch[40].client_msg_id = "c-0";  // alice's retry of seq 1, in the second statement
  batch[66].client_msg_id = batch[64].client_msg_id;  // a repeat inside the third
  batch[66].publisher_id = batch[66].publisher_name = batch[64].publisher_id;
  const std::vector<std::string> files(batch.size());
  ASSERT_TRUE(s.begin());
  auto r = s.insert_messages(batch, files);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) EXPECT_EQ((*r)[i], i != 40 && i != 66) << i;
  // Seqs 42 and 68 are free: the messages after each move down, in ascending order.
  Seq want = 2;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!(*r)[i]) continue;
    if (batch[i].seq != want) {
      ASSERT_TRUE(s.move_message(a, batch[i].seq, want)) << i;
    }
    ++want;
  }
  EXPECT_EQ(s.move_message(a, 999, 1000).error().code, Errc::not_found);
  ASSERT_TRUE(s.set_last_seq(a, want - 1));
  ASSERT_TRUE(s.commit());
  EXPECT_FALSE(s.move_message(a, 3, 2)) << "seq 2 is taken";  // alone: PostgreSQL's fails
  auto all = s.messages_after(a, 0, 100).value();
  ASSERT_EQ(all.size(), 69u);
  for (std::size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].seq, static_cast<Seq>(i + 1));
  EXPECT_EQ(all[40].body, "m39");
  EXPECT_EQ(all[41].body, "m41") << "m40 was refused: m41 moved from 43 to 42";
  EXPECT_EQ(all[68].body, "m69");
  auto moved = s.find_sent(batch[41].publisher_id, batch[41].client_msg_id).value();
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->seq, 42) << "the retry index follows the move";
  auto again = s.find_sent("alice", "c-0").value();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->seq, 1);
}

// Mentions travel with the message, on both insert paths, and an owner change bumps the
// membership version (the writer caches the owner with the members: who may mention "all").
TYPED_TEST(StoreSuite, MentionsAreStoredAndAnOwnerChangeBumpsTheVersion) {
  auto& s = *this->s_;
  auto a = this->make_group({"alice", "bob", "carol"});
  Message m;
  m.conversation_id = a;
  m.seq = 1;
  m.publisher_id = "alice";
  m.publisher_name = "alice";
  m.body = "hi @bob @carol";
  m.ts_ms = 5;
  m.mentions = {"bob", "carol"};
  ASSERT_TRUE(s.begin());
  ASSERT_TRUE(s.insert_message(m, "").value());
  Message all = m;
  all.seq = 2;
  all.mentions = {"all"};
  Message none = m;
  none.seq = 3;
  none.mentions.clear();
  ASSERT_TRUE(s.insert_messages(std::vector<Message>{all, none}, std::vector<std::string>{"", ""}));
  ASSERT_TRUE(s.set_last_seq(a, 3));
  ASSERT_TRUE(s.commit());
  auto got = s.messages_after(a, 0, 10).value();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].mentions, (std::vector<std::string>{"bob", "carol"}));
  EXPECT_EQ(got[1].mentions, (std::vector<std::string>{"all"}));
  EXPECT_TRUE(got[2].mentions.empty());
  EXPECT_EQ(s.messages_before(a, 2, 1).value().at(0).mentions, got[0].mentions);

  auto v0 = s.get_conversation(a).value()->members_version;
  ASSERT_TRUE(s.set_owner(a, "alice"));  // the same owner: no change
  EXPECT_EQ(s.get_conversation(a).value()->members_version, v0);
  ASSERT_TRUE(s.set_owner(a, "bob"));
  EXPECT_GT(s.get_conversation(a).value()->members_version, v0);
  EXPECT_EQ(s.get_conversation(a).value()->owner, "bob");
}

// The push tables (store.hpp, PushRef, PushRecord): rows belong to a node, which alone lists,
// claims and removes them, until another node adopts them (one of several that try at once).
TYPED_TEST(StoreSuite, PushRowsBelongToTheirNodeUntilAdopted) {
  auto& s = *this->s_;
  const std::vector<PushRef> mine{{1, 1}, {1, 2}, {2, 1}};
  ASSERT_TRUE(s.begin());
  ASSERT_TRUE(s.push_outbox_add("n1", mine, 10));
  ASSERT_TRUE(s.push_outbox_add("n2", std::vector<PushRef>{{3, 1}}, 10));
  ASSERT_TRUE(s.push_outbox_add("n2", std::vector<PushRef>{{1, 1}}, 11));  // taken: ignored
  ASSERT_TRUE(s.commit());
  EXPECT_EQ(s.push_outbox_list("n1", {}, 10).value(), mine);
  EXPECT_EQ(s.push_outbox_list("n1", {1, 1}, 10).value(), (std::vector<PushRef>{{1, 2}, {2, 1}}));
  EXPECT_EQ(s.push_outbox_list("n1", {}, 1).value(), (std::vector<PushRef>{{1, 1}}));
  EXPECT_EQ(s.push_outbox_owned("n1", std::vector<PushRef>{{2, 1}, {3, 1}, {9, 9}, {2, 1}}).value(),
            (std::vector<PushRef>{{2, 1}}));
  EXPECT_TRUE(s.push_outbox_owned("n1", std::vector<PushRef>{}).value().empty());

  auto rec = [](std::string user, Seq seq, int64_t at) {
    return PushRecord{std::move(user), 1, seq, R"({"user_id":"x","preview":"\"q\""})", 1, at,
                      "HTTP 500"};
  };
  ASSERT_TRUE(s.begin());
  ASSERT_TRUE(s.push_pending_put(
      "n1", std::vector<PushRecord>{rec("bob", 1, 50), rec("carol", 1, 20), rec("bob", 2, 90)}));
  ASSERT_TRUE(s.commit());
  EXPECT_EQ(s.push_pending_next("n1").value(), std::optional<int64_t>(20));
  EXPECT_FALSE(s.push_pending_next("n2").value());
  auto due = s.push_pending_due("n1", 60, 10).value();
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].user_id, "carol");  // the earliest first
  EXPECT_EQ(due[1].user_id, "bob");
  EXPECT_EQ(due[1].payload, rec("bob", 1, 50).payload);
  EXPECT_EQ(due[1].last_error, "HTTP 500");
  EXPECT_EQ(s.push_pending_due("n1", 60, 1).value().size(), 1u);
  EXPECT_TRUE(s.push_pending_due("n2", 1000, 10).value().empty());
  // A retry replaces the row.
  auto again = rec("carol", 1, 70);
  again.attempts = 2;
  ASSERT_TRUE(s.begin());
  ASSERT_TRUE(s.push_pending_put("n1", std::vector<PushRecord>{again}));
  ASSERT_TRUE(s.commit());
  due = s.push_pending_due("n1", 60, 10).value();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].user_id, "bob");
  EXPECT_EQ(s.push_pending_due("n1", 70, 10).value().at(1).attempts, 2);

  EXPECT_EQ(s.push_owners().value(), (std::vector<std::string>{"n1", "n2"}));
  // Two nodes adopt n1's rows: the first gets them all, the second none.
  ASSERT_TRUE(s.begin());
  EXPECT_EQ(s.push_adopt("n1", "n3").value(), 6);
  EXPECT_EQ(s.push_adopt("n1", "n4").value(), 0);
  ASSERT_TRUE(s.commit());
  EXPECT_TRUE(s.push_outbox_list("n1", {}, 10).value().empty());
  EXPECT_EQ(s.push_outbox_list("n3", {}, 10).value(), mine);
  EXPECT_EQ(s.push_owners().value(), (std::vector<std::string>{"n2", "n3"}));
  // Only the owner removes.
  ASSERT_TRUE(s.begin());
  EXPECT_EQ(s.push_outbox_remove("n1", mine).value(), 0);
  EXPECT_EQ(s.push_outbox_remove("n3", std::vector<PushRef>{{1, 2}, {2, 1}}).value(), 2);
  ASSERT_TRUE(s.push_pending_remove("n1", std::vector<PushRecord>{rec("bob", 1, 0)}));
  ASSERT_TRUE(s.push_pending_remove("n3", std::vector<PushRecord>{rec("bob", 2, 0)}));
  ASSERT_TRUE(s.commit());
  EXPECT_EQ(s.push_outbox_list("n3", {}, 10).value(), (std::vector<PushRef>{{1, 1}}));
  EXPECT_EQ(s.push_pending_due("n3", 1000, 10).value().size(), 2u);

  // Dead letters: the newest first; a second put of a key replaces it.
  auto d1 = rec("bob", 1, 100), d2 = rec("carol", 2, 200);
  d1.attempts = 6;
  ASSERT_TRUE(s.begin());
  ASSERT_TRUE(s.push_dead_put(std::vector<PushRecord>{d1, d2}));
  d1.at_ms = 300;
  ASSERT_TRUE(s.push_dead_put(std::vector<PushRecord>{d1}));
  ASSERT_TRUE(s.commit());
  auto dead = s.push_dead_list(10).value();
  ASSERT_EQ(dead.size(), 2u);
  EXPECT_EQ(dead[0].user_id, "bob");
  EXPECT_EQ(dead[0].at_ms, 300);
  EXPECT_EQ(dead[0].attempts, 6);
  EXPECT_EQ(dead[1].user_id, "carol");
  EXPECT_EQ(s.push_dead_list(1).value().size(), 1u);
}

// A failed batch insert under a savepoint is undone alone (the writer then goes one by one).
TYPED_TEST(StoreSuite, AFailedBatchInsertIsUndoneBySavepoint) {
  auto& s = *this->s_;
  auto a = this->make_group({"alice", "bob"});
  Message good;
  good.conversation_id = a;
  good.seq = 1;
  good.publisher_id = good.publisher_name = "alice";
  good.body = "ok";
  good.client_msg_id = "g";
  good.ts_ms = 1;
  Message bad = good;
  bad.seq = 2;
  bad.client_msg_id = "b";
  bad.body = std::string("nul\0byte", 8);
  ASSERT_TRUE(s.begin());
  ASSERT_TRUE(s.savepoint());
  const std::vector<Message> batch{good, bad};
  const std::vector<std::string> files{"", ""};
  auto r = s.insert_messages(batch, files);
  if (r) {  // SQLite stores a NUL: nothing to undo then
    s.rollback();
    return;
  }
  s.rollback_to_savepoint();
  EXPECT_TRUE(s.insert_message(good, "").value());
  ASSERT_TRUE(s.set_last_seq(a, 1));
  ASSERT_TRUE(s.commit());
  auto all = s.messages_after(a, 0, 10).value();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].body, "ok");
}

TYPED_TEST(StoreSuite, CursorsOnlyMoveForward) {
  auto& s = *this->s_;
  ASSERT_TRUE(s.advance_acked("alice", "d", 1, 5));
  ASSERT_TRUE(s.advance_acked("alice", "d", 1, 3));
  ASSERT_TRUE(s.advance_fetched("alice", "d", 1, 9));
  ASSERT_TRUE(s.advance_fetched("alice", "d", 2, 4));
  auto c = s.cursors("alice", "d").value();
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].second.acked, 5);
  EXPECT_EQ(c[0].second.fetched, 9);
  EXPECT_EQ(c[1].second.acked, 0);
  EXPECT_TRUE(s.cursors("alice", "other").value().empty());
}

TYPED_TEST(StoreSuite, FileAccessIsUploaderOrMemberWhereSent) {
  auto& s = *this->s_;
  ASSERT_TRUE(s.insert_file(FileMeta{"f1", "abc", "a.png", "image/png", 3, "alice", 1}));
  EXPECT_TRUE(s.file_accessible("f1", "alice").value());
  EXPECT_FALSE(s.file_accessible("f1", "bob").value());
  auto id = this->make_group({"alice", "bob"});
  ASSERT_TRUE(s.begin());
  Message m;
  m.conversation_id = id;
  m.seq = s.lock_last_seq(id).value() + 1;
  m.publisher_id = "alice";
  m.type = MessageType::image;
  ASSERT_TRUE(s.insert_message(m, "f1").value());
  ASSERT_TRUE(s.set_last_seq(id, m.seq));
  ASSERT_TRUE(s.commit());
  EXPECT_TRUE(s.file_accessible("f1", "bob").value());
  EXPECT_FALSE(s.file_accessible("f1", "carol").value());
  auto msgs = s.messages_after(id, 0, 10).value();
  ASSERT_EQ(msgs.size(), 1u);
  ASSERT_TRUE(msgs[0].file);
  EXPECT_EQ(msgs[0].file->name, "a.png");
}

// --- groups (DESIGN.md section 8) ---

// A member's role as reads give it: the owner's is `owner` (the conversation's), the others'
// their row's.
Role role_of(const Conversation& c, const std::string& user) {
  for (auto& m : c.members)
    if (m.user_id == user) return m.role;
  ADD_FAILURE() << user << " is not a member of " << c.id;
  return Role::member;
}

// Roles round trip through every read of a conversation; a role change and an owner change
// bump the membership version (a writer caches the roles with the members); the new owner's
// row goes back to `member`, so that it is not an admin once the ownership moves on.
TYPED_TEST(StoreSuite, RolesRoundTripAndAnOwnerTransferResetsTheRow) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob", "carol"});
  auto c = s.get_conversation(id).value().value();
  EXPECT_EQ(role_of(c, "alice"), Role::owner);
  EXPECT_EQ(role_of(c, "bob"), Role::member);
  const int64_t v0 = c.members_version;

  ASSERT_TRUE(s.set_role(id, "bob", Role::admin));
  c = s.get_conversation(id).value().value();
  EXPECT_EQ(role_of(c, "bob"), Role::admin);
  EXPECT_EQ(role_of(c, "carol"), Role::member);
  const int64_t v1 = c.members_version;
  EXPECT_GT(v1, v0);
  ASSERT_TRUE(s.begin());
  EXPECT_EQ(s.lock_conversation(id).value().members_version, v1);
  ASSERT_TRUE(s.commit());
  ASSERT_TRUE(s.set_role(id, "bob", Role::admin));  // no change: the cached view holds
  EXPECT_EQ(s.get_conversation(id).value()->members_version, v1);
  for (auto& list :
       {s.list_conversations("carol").value(), s.list_conversations_page("carol", 0, 10).value()}) {
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(role_of(list[0], "alice"), Role::owner);
    EXPECT_EQ(role_of(list[0], "bob"), Role::admin);
    EXPECT_EQ(role_of(list[0], "carol"), Role::member);
  }
  EXPECT_EQ(s.set_role(id, "nobody", Role::admin).error().code, Errc::not_found);
  EXPECT_EQ(s.set_role(id + 100, "bob", Role::admin).error().code, Errc::not_found);
  EXPECT_EQ(s.set_role(id, "carol", Role::owner).error().code, Errc::bad_request);

  // The admin becomes the owner: their row is a member's again, the old owner a member.
  ASSERT_TRUE(s.set_owner(id, "bob"));
  c = s.get_conversation(id).value().value();
  EXPECT_EQ(c.owner, "bob");
  EXPECT_EQ(role_of(c, "bob"), Role::owner);
  EXPECT_EQ(role_of(c, "alice"), Role::member);
  const int64_t v2 = c.members_version;
  EXPECT_GT(v2, v1);
  ASSERT_TRUE(s.set_owner(id, "alice"));
  c = s.get_conversation(id).value().value();
  EXPECT_EQ(role_of(c, "alice"), Role::owner);
  EXPECT_EQ(role_of(c, "bob"), Role::member) << "the row was reset when bob became the owner";
  EXPECT_GT(c.members_version, v2);

  // create_conversation keeps the roles it is given (an owner's is the conversation's).
  Conversation g;
  g.type = ConversationType::group;
  g.name = "with admins";
  g.owner = "carol";
  g.members = {{"carol", false, Role::owner}, {"alice", false, Role::admin}, {"bob", false}};
  auto gid = s.create_conversation(g, "").value();
  c = s.get_conversation(gid).value().value();
  EXPECT_EQ(role_of(c, "carol"), Role::owner);
  EXPECT_EQ(role_of(c, "alice"), Role::admin);
  EXPECT_EQ(role_of(c, "bob"), Role::member);
  ASSERT_TRUE(s.set_owner(gid, "bob"));
  EXPECT_EQ(role_of(s.get_conversation(gid).value().value(), "carol"), Role::member)
      << "the owner's row was never anything but a member's";
}

// Each field given is set, the others stay; a change bumps the membership version, an update
// that changes nothing does not.
TYPED_TEST(StoreSuite, UpdateConversationSetsOnlyWhatItIsGiven) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob"});
  auto c = s.get_conversation(id).value().value();
  EXPECT_EQ(c.notice, "");
  EXPECT_EQ(c.join_policy, JoinPolicy::approval);
  const int64_t v0 = c.members_version;

  ASSERT_TRUE(s.update_conversation(id, std::nullopt, "read the rules", std::nullopt));
  c = s.get_conversation(id).value().value();
  EXPECT_EQ(c.name, "g");
  EXPECT_EQ(c.notice, "read the rules");
  EXPECT_EQ(c.join_policy, JoinPolicy::approval);
  const int64_t v1 = c.members_version;
  EXPECT_GT(v1, v0);

  ASSERT_TRUE(s.update_conversation(id, "renamed", std::nullopt, JoinPolicy::invite_only));
  c = s.get_conversation(id).value().value();
  EXPECT_EQ(c.name, "renamed");
  EXPECT_EQ(c.notice, "read the rules");
  EXPECT_EQ(c.join_policy, JoinPolicy::invite_only);
  const int64_t v2 = c.members_version;
  EXPECT_GT(v2, v1);

  ASSERT_TRUE(s.update_conversation(id, std::nullopt, std::nullopt, std::nullopt));
  ASSERT_TRUE(s.update_conversation(id, "renamed", std::nullopt, JoinPolicy::invite_only));
  EXPECT_EQ(s.get_conversation(id).value()->members_version, v2) << "nothing changed";

  ASSERT_TRUE(s.update_conversation(id, std::nullopt, "", JoinPolicy::open));  // "" clears it
  for (auto& list :
       {s.list_conversations("bob").value(), s.list_conversations_page("bob", 0, 10).value()}) {
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].name, "renamed");
    EXPECT_EQ(list[0].notice, "");
    EXPECT_EQ(list[0].join_policy, JoinPolicy::open);
  }
  EXPECT_EQ(s.update_conversation(id + 100, "x", std::nullopt, std::nullopt).error().code,
            Errc::not_found);

  // create_conversation stores them too.
  Conversation g;
  g.type = ConversationType::group;
  g.name = "club";
  g.owner = "alice";
  g.notice = "welcome";
  g.join_policy = JoinPolicy::invite_only;
  g.members = {{"alice", false}};
  auto gid = s.create_conversation(g, "").value();
  c = s.get_conversation(gid).value().value();
  EXPECT_EQ(c.notice, "welcome");
  EXPECT_EQ(c.join_policy, JoinPolicy::invite_only);
}

TYPED_TEST(StoreSuite, MembersAreCounted) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob"});
  EXPECT_EQ(s.count_members(id).value(), 2);
  ASSERT_TRUE(s.add_member(id, "carol", 2));
  EXPECT_EQ(s.count_members(id).value(), 3);
  ASSERT_TRUE(s.remove_member(id, "alice"));
  EXPECT_EQ(s.count_members(id).value(), 2);
  EXPECT_EQ(s.count_members(id + 100).value(), 0);
}

// The directory: an id's prefix or a name's substring, ASCII case folded, LIKE's characters
// standing for themselves, in pages by id.
TYPED_TEST(StoreSuite, UsersAreSearchedByIdPrefixOrName) {
  auto& s = *this->s_;
  for (auto [id, name] :
       {std::pair{"daniel", "Dan"}, std::pair{"dave", "Dave Smith"},
        std::pair{"erin", "Erin 100% real"}, std::pair{"frank", "under_score"},
        std::pair{"gus", "back\\slash"}, std::pair{"zed", "Big DAVE"}, std::pair{"Xavier", "X"}})
    ASSERT_TRUE(s.create_user(User{id, name, false, 1}, "h"));
  auto ids = [](const Result<std::vector<User>>& r) {
    std::vector<std::string> out;
    EXPECT_TRUE(r) << r.error().message;
    if (r)
      for (auto& u : r.value()) out.push_back(u.id);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(s.search_users("da", "", 10)), (V{"daniel", "dave", "zed"}));
  EXPECT_EQ(ids(s.search_users("DA", "", 10)), (V{"daniel", "dave", "zed"})) << "case folded";
  EXPECT_EQ(ids(s.search_users("ve sm", "", 10)), (V{"dave"}));
  EXPECT_EQ(ids(s.search_users("xav", "", 10)), (V{"Xavier"})) << "an id's case too";
  EXPECT_EQ(ids(s.search_users("%", "", 10)), (V{"erin"})) << "% is itself";
  EXPECT_EQ(ids(s.search_users("0%", "", 10)), (V{"erin"}));
  EXPECT_EQ(ids(s.search_users("_", "", 10)), (V{"frank"})) << "_ is itself";
  EXPECT_EQ(ids(s.search_users("\\", "", 10)), (V{"gus"})) << "the escape is itself";
  EXPECT_TRUE(ids(s.search_users("nobody", "", 10)).empty());
  // Pages: ascending id after after_id, at most limit.
  EXPECT_EQ(ids(s.search_users("da", "", 1)), (V{"daniel"}));
  EXPECT_EQ(ids(s.search_users("da", "daniel", 10)), (V{"dave", "zed"}));
  EXPECT_EQ(ids(s.search_users("da", "dave", 10)), (V{"zed"}));
  EXPECT_TRUE(ids(s.search_users("da", "zed", 10)).empty());
  EXPECT_EQ(ids(s.search_users("", "", 3)), (V{"Xavier", "alice", "bob"})) << "everyone";
  EXPECT_EQ(ids(s.search_users("", "bob", 3)), (V{"carol", "daniel", "dave"}));
  auto full = s.search_users("smith", "", 10).value();
  ASSERT_EQ(full.size(), 1u);
  EXPECT_EQ(full[0].name, "Dave Smith");
  EXPECT_EQ(full[0].created_at_ms, 1);
}

TYPED_TEST(StoreSuite, DirectPolicyIsKeptWithTheUser) {
  auto& s = *this->s_;
  EXPECT_EQ(s.find_user("bob").value()->user.direct_policy, DirectPolicy::anyone);
  ASSERT_TRUE(s.set_direct_policy("bob", DirectPolicy::friends));
  ASSERT_TRUE(s.set_admin("bob", true));
  EXPECT_EQ(s.find_user("bob").value()->user.direct_policy, DirectPolicy::friends);
  EXPECT_EQ(s.list_admins().value().at(0).direct_policy, DirectPolicy::friends);
  const auto users = s.list_users(10).value();
  for (auto& u : users)
    EXPECT_EQ(u.direct_policy, u.id == "bob" ? DirectPolicy::friends : DirectPolicy::anyone);
  EXPECT_EQ(s.search_users("bob", "", 10).value().at(0).direct_policy, DirectPolicy::friends);
  ASSERT_TRUE(s.set_direct_policy("bob", DirectPolicy::anyone));
  EXPECT_EQ(s.find_user("bob").value()->user.direct_policy, DirectPolicy::anyone);
  EXPECT_EQ(s.set_direct_policy("nobody", DirectPolicy::friends).error().code, Errc::not_found);
  User dora{"dora", "Dora", false, 2};
  dora.direct_policy = DirectPolicy::friends;
  ASSERT_TRUE(s.create_user(dora, "h"));
  EXPECT_EQ(s.find_user("dora").value()->user.direct_policy, DirectPolicy::friends);
}

Request make_request(std::string id, RequestKind kind, ConversationId conversation,
                     std::string user, std::string from, int64_t created, int64_t expires) {
  Request r;
  r.id = std::move(id);
  r.kind = kind;
  r.conversation_id = conversation;
  r.user_id = std::move(user);
  r.from_id = std::move(from);
  r.text = "please, " + r.id;
  r.created_at_ms = created;
  r.expires_at_ms = expires;
  return r;
}

std::string show_request(const Request& r) {
  return r.id + " " + std::string(request_kind_name(r.kind)) + " " +
         std::to_string(r.conversation_id) + " " + r.user_id + "<-" + r.from_id + " [" + r.text +
         "] " + std::string(request_status_name(r.status)) + " by=" + r.decided_by +
         " created=" + std::to_string(r.created_at_ms) +
         " decided=" + std::to_string(r.decided_at_ms) +
         " expires=" + std::to_string(r.expires_at_ms);
}

// A request is pending until decided once or until it expires: the second decision (another
// node's, say) changes nothing, nor does one after the expiry.
TYPED_TEST(StoreSuite, ARequestIsDecidedOnce) {
  auto& s = *this->s_;
  auto g = this->make_group({"alice"});
  const Request r1 = make_request("r1", RequestKind::application, g, "bob", "bob", 10, 1000);
  ASSERT_TRUE(s.request_insert(r1));
  EXPECT_EQ(s.request_insert(r1).error().code, Errc::conflict);
  EXPECT_EQ(s.request_insert(
                 make_request("r9", RequestKind::application, g, "nobody", "nobody", 10, 1000))
                .error()
                .code,
            Errc::not_found);
  auto got = s.request_get("r1").value();
  ASSERT_TRUE(got);
  EXPECT_EQ(show_request(*got), show_request(r1));
  EXPECT_FALSE(s.request_get("nope").value());

  auto pending = s.request_find_pending(RequestKind::application, g, "bob", "bob", 20).value();
  ASSERT_TRUE(pending);
  EXPECT_EQ(pending->id, "r1");
  EXPECT_FALSE(s.request_find_pending(RequestKind::application, g, "bob", "bob", 1000).value())
      << "expired at expires_at_ms";
  EXPECT_FALSE(s.request_find_pending(RequestKind::invitation, g, "bob", "bob", 20).value());
  EXPECT_FALSE(s.request_find_pending(RequestKind::application, g + 1, "bob", "bob", 20).value());
  EXPECT_FALSE(s.request_find_pending(RequestKind::application, g, "bob", "carol", 20).value());

  EXPECT_EQ(s.request_decide("r1", RequestStatus::pending, "alice", 30, 0).error().code,
            Errc::bad_request);
  ASSERT_TRUE(s.request_decide("r1", RequestStatus::approved, "alice", 30, 0).value());
  Request decided = r1;
  decided.status = RequestStatus::approved;
  decided.decided_by = "alice";
  decided.decided_at_ms = 30;
  EXPECT_EQ(show_request(*s.request_get("r1").value()), show_request(decided));
  EXPECT_FALSE(s.request_decide("r1", RequestStatus::declined, "carol", 40, 0).value());
  EXPECT_EQ(show_request(*s.request_get("r1").value()), show_request(decided)) << "unchanged";
  EXPECT_FALSE(s.request_find_pending(RequestKind::application, g, "bob", "bob", 50).value());
  EXPECT_FALSE(s.request_decide("nope", RequestStatus::approved, "alice", 30, 0).value());

  // Past its expiry nothing decides it; requests_expire marks it.
  const Request r2 = make_request("r2", RequestKind::invitation, g, "carol", "alice", 20, 100);
  ASSERT_TRUE(s.request_insert(r2));
  EXPECT_FALSE(s.request_decide("r2", RequestStatus::accepted, "carol", 100, 0).value());
  EXPECT_EQ(show_request(*s.request_get("r2").value()), show_request(r2));
  EXPECT_EQ(s.requests_expire(99).value(), 0);
  EXPECT_EQ(s.requests_expire(100).value(), 1);
  EXPECT_EQ(s.request_get("r2").value()->status, RequestStatus::expired);
  EXPECT_EQ(s.requests_expire(100).value(), 0);
  EXPECT_EQ(s.request_get("r1").value()->status, RequestStatus::approved) << "decided: not expired";

  // An accepted friend request names the direct conversation it opened.
  ASSERT_TRUE(s.request_insert(
      make_request("f1", RequestKind::friend_request, 0, "bob", "alice", 50, 1000)));
  auto f = s.request_find_pending(RequestKind::friend_request, 0, "bob", "alice", 60).value();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->id, "f1");
  ASSERT_TRUE(s.request_decide("f1", RequestStatus::accepted, "bob", 60, 77).value());
  got = s.request_get("f1").value();
  EXPECT_EQ(got->conversation_id, 77);
  EXPECT_EQ(got->status, RequestStatus::accepted);
  EXPECT_EQ(got->decided_at_ms, 60);
  EXPECT_EQ(s.count_rows().value().requests, 3);
}

// Lists of pending requests: a group's, a user's (about them, or also made by them), of one
// kind, the newest first; decided and expired ones are not pending.
TYPED_TEST(StoreSuite, PendingRequestsAreListedNewestFirst) {
  auto& s = *this->s_;
  auto g = this->make_group({"alice"});
  auto h = this->make_group({"carol"});
  using K = RequestKind;
  for (auto& r : {make_request("a1", K::application, g, "carol", "carol", 10, 1000),
                  make_request("a2", K::application, g, "bob", "bob", 20, 1000),
                  make_request("a3", K::application, h, "bob", "bob", 30, 1000),
                  make_request("a4", K::application, g, "alice", "alice", 40, 1000),
                  make_request("a5", K::application, g, "bob", "bob", 50, 60),
                  make_request("i1", K::invitation, g, "carol", "alice", 15, 1000),
                  make_request("i2", K::invitation, h, "bob", "carol", 25, 1000),
                  make_request("i3", K::invitation, g, "alice", "carol", 35, 1000),
                  make_request("i4", K::invitation, g, "carol", "bob", 45, 1000)})
    ASSERT_TRUE(s.request_insert(r));
  ASSERT_TRUE(s.request_decide("a4", RequestStatus::cancelled, "alice", 41, 0).value());
  ASSERT_TRUE(s.request_decide("i4", RequestStatus::declined, "carol", 46, 0).value());
  auto ids = [](const Result<std::vector<Request>>& r) {
    std::vector<std::string> out;
    EXPECT_TRUE(r) << r.error().message;
    if (r)
      for (auto& q : r.value()) out.push_back(q.id);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(s.requests_of_conversation(K::application, g, 100, 10)), (V{"a2", "a1"}));
  EXPECT_EQ(ids(s.requests_of_conversation(K::application, g, 55, 10)), (V{"a5", "a2", "a1"}))
      << "a5 before its expiry";
  EXPECT_EQ(ids(s.requests_of_conversation(K::application, g, 100, 1)), (V{"a2"}));
  EXPECT_EQ(ids(s.requests_of_conversation(K::invitation, g, 100, 10)), (V{"i3", "i1"}));
  EXPECT_EQ(ids(s.requests_of_conversation(K::application, h, 100, 10)), (V{"a3"}));
  EXPECT_EQ(ids(s.requests_of_user(K::application, "bob", false, 100, 10)), (V{"a3", "a2"}));
  EXPECT_EQ(ids(s.requests_of_user(K::application, "bob", true, 100, 10)), (V{"a3", "a2"}))
      << "an applicant is both: listed once";
  EXPECT_EQ(ids(s.requests_of_user(K::invitation, "carol", false, 100, 10)), (V{"i1"}));
  EXPECT_EQ(ids(s.requests_of_user(K::invitation, "carol", true, 100, 10)), (V{"i3", "i2", "i1"}));
  EXPECT_EQ(ids(s.requests_of_user(K::invitation, "carol", true, 100, 2)), (V{"i3", "i2"}));
  EXPECT_TRUE(ids(s.requests_of_user(K::invitation, "bob", false, 1000, 10)).empty())
      << "all expired";
  EXPECT_TRUE(ids(s.requests_of_user(K::friend_request, "bob", true, 100, 10)).empty());
  EXPECT_EQ(s.requests_expire(100).value(), 1);  // a5
  EXPECT_EQ(s.request_get("a5").value()->status, RequestStatus::expired);
  EXPECT_EQ(ids(s.requests_of_conversation(K::application, g, 55, 10)), (V{"a2", "a1"}));
}

// One row per pair, whichever order the pair comes in.
TYPED_TEST(StoreSuite, FriendsArePairs) {
  auto& s = *this->s_;
  EXPECT_FALSE(s.are_friends("alice", "bob").value());
  ASSERT_TRUE(s.add_friend("bob", "alice", 5));
  EXPECT_TRUE(s.are_friends("alice", "bob").value());
  EXPECT_TRUE(s.are_friends("bob", "alice").value());
  ASSERT_TRUE(s.add_friend("alice", "bob", 9));  // already: stays as it was
  ASSERT_TRUE(s.add_friend("alice", "carol", 7));
  auto show = [](const Result<std::vector<Friend>>& r) {
    std::string out;
    EXPECT_TRUE(r) << r.error().message;
    if (r)
      for (auto& f : r.value()) out += f.user_id + "@" + std::to_string(f.since_ms) + " ";
    return out;
  };
  EXPECT_EQ(show(s.list_friends("alice")), "bob@5 carol@7 ");
  EXPECT_EQ(show(s.list_friends("bob")), "alice@5 ");
  EXPECT_EQ(show(s.list_friends("carol")), "alice@7 ");
  EXPECT_EQ(s.count_rows().value().friends, 2);
  EXPECT_EQ(s.add_friend("alice", "alice", 1).error().code, Errc::bad_request);
  EXPECT_EQ(s.add_friend("alice", "nobody", 1).error().code, Errc::not_found);
  ASSERT_TRUE(s.remove_friend("bob", "alice"));
  EXPECT_FALSE(s.are_friends("alice", "bob").value());
  ASSERT_TRUE(s.remove_friend("alice", "bob"));  // none: ok
  EXPECT_EQ(show(s.list_friends("alice")), "carol@7 ");
  EXPECT_EQ(show(s.list_friends("bob")), "");
}

// A group's change is a message of type `system`, stored by the node: it reads back as such.
TYPED_TEST(StoreSuite, SystemMessagesReadBack) {
  auto& s = *this->s_;
  auto id = this->make_group({"alice", "bob"});
  Message m;
  m.conversation_id = id;
  m.seq = 1;
  m.publisher_id = "alice";
  m.publisher_name = "alice";
  m.type = MessageType::system;
  m.body = R"({"event":"member_added","user":"carol"})";
  m.ts_ms = 5;
  Message n = m;
  n.seq = 2;
  ASSERT_TRUE(s.begin());
  ASSERT_TRUE(s.insert_message(m, "").value());
  ASSERT_TRUE(s.insert_messages(std::vector<Message>{n}, std::vector<std::string>{""}));
  ASSERT_TRUE(s.set_last_seq(id, 2));
  ASSERT_TRUE(s.commit());
  auto got = s.messages_after(id, 0, 10).value();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].type, MessageType::system);
  EXPECT_EQ(got[1].type, MessageType::system);
  EXPECT_EQ(got[0].body, m.body);
  EXPECT_EQ(s.messages_before(id, 3, 1).value().at(0).type, MessageType::system);
}

// Rooms get ids from 1 up; a list pages by id and counts each room's members.
TYPED_TEST(StoreSuite, RoomsAreCreatedListedAndCounted) {
  auto& s = *this->s_;
  const RoomId a = this->make_room("lobby", 5), b = this->make_room("b \xe2\x9c\x93"),
               c = this->make_room("c", 3, "bob");
  EXPECT_EQ(a, 1u) << "the first room's id";
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  auto got = s.room_get(a).value();
  ASSERT_TRUE(got);
  EXPECT_EQ(got->id, a);
  EXPECT_EQ(got->name, "lobby");
  EXPECT_EQ(got->owner, "alice");
  EXPECT_EQ(got->max_members, 5);
  EXPECT_EQ(got->created_at_ms, 7);
  EXPECT_EQ(got->member_count, 0);
  EXPECT_EQ(s.room_get(b).value()->name, "b \xe2\x9c\x93");
  EXPECT_FALSE(s.room_get(c + 1).value());
  EXPECT_EQ(s.room_create(Room{0, "x", "nobody", 5, 1, 0}).error().code, Errc::not_found);

  ASSERT_TRUE(this->join(a, "alice", "n1", 1));
  ASSERT_TRUE(this->join(a, "bob", "n2", 1));
  ASSERT_TRUE(this->join(c, "carol", "n1", 2));
  auto show = [](const Result<std::vector<Room>>& r) {
    std::string out;
    EXPECT_TRUE(r) << r.error().message;
    if (r)
      for (auto& room : r.value())
        out += std::to_string(room.id) + ":" + room.name + "=" + std::to_string(room.member_count) +
               " ";
    return out;
  };
  const std::string ia = std::to_string(a), ib = std::to_string(b), ic = std::to_string(c);
  EXPECT_EQ(show(s.rooms_list(0, 10)), ia + ":lobby=2 " + ib + ":b \xe2\x9c\x93=0 " + ic + ":c=1 ");
  EXPECT_EQ(show(s.rooms_list(0, 2)), ia + ":lobby=2 " + ib + ":b \xe2\x9c\x93=0 ");
  EXPECT_EQ(show(s.rooms_list(b, 2)), ic + ":c=1 ");
  EXPECT_EQ(show(s.rooms_list(c, 2)), "");
  EXPECT_EQ(s.room_get(a).value()->member_count, 2);
  EXPECT_EQ(s.room_get(c).value()->member_count, 1);
  auto counts = s.count_rows().value();
  EXPECT_EQ(counts.rooms, 3);
  EXPECT_EQ(counts.room_bans, 0);
}

// Each room numbers its members from 1, and a number once given is not given again in it, not
// even to the user who had it.
TYPED_TEST(StoreSuite, MemberNumbersCountUpAndAreNotReused) {
  auto& s = *this->s_;
  const RoomId a = this->make_room("a"), b = this->make_room("b");
  auto j = this->join(a, "alice", "n1", 11, 100);
  ASSERT_TRUE(j) << j.error().message;
  EXPECT_TRUE(j->fresh);
  EXPECT_EQ(this->show_member(j->member), std::to_string(a) + ":alice#1@n1/11(100)");
  EXPECT_EQ(this->join(a, "bob", "n1", 12).value().member.member_no, 2u);
  auto left = s.room_leave(a, "alice", "n1", 11).value();
  ASSERT_TRUE(left);
  EXPECT_EQ(this->show_member(*left), std::to_string(a) + ":alice#1@n1/11(100)");
  EXPECT_EQ(this->join(a, "carol", "n2", 13).value().member.member_no, 3u);
  j = this->join(a, "alice", "n2", 14, 200);
  ASSERT_TRUE(j);
  EXPECT_TRUE(j->fresh) << "she had left: a new member";
  EXPECT_EQ(j->member.member_no, 4u);
  EXPECT_EQ(this->join(b, "carol", "n1", 15).value().member.member_no, 1u) << "b counts its own";
  const std::string ia = std::to_string(a);
  EXPECT_EQ(this->members_of(a),
            ia + ":bob#2@n1/12(100) " + ia + ":carol#3@n2/13(100) " + ia + ":alice#4@n2/14(200) ");
  EXPECT_EQ(this->members_of(b), std::to_string(b) + ":carol#1@n1/15(100) ");
  EXPECT_EQ(this->members_of(b + 1), "") << "no such room: no members";
}

// A member who joins again (another connection, another node) is moved: the same number, the
// same mute, the same joined_at; the old connection's leave then finds nothing of theirs.
TYPED_TEST(StoreSuite, ARejoinMovesTheMemberAndKeepsTheirNumber) {
  auto& s = *this->s_;
  const RoomId a = this->make_room("a");
  ASSERT_TRUE(this->join(a, "alice", "n1", 1, 100));
  ASSERT_TRUE(this->join(a, "bob", "n1", 2, 100));
  ASSERT_TRUE(s.room_set_muted(a, "bob", true));
  auto j = this->join(a, "bob", "n2", 7, 300);
  ASSERT_TRUE(j) << j.error().message;
  EXPECT_FALSE(j->fresh);
  const std::string ia = std::to_string(a);
  EXPECT_EQ(this->show_member(j->member), ia + ":bob#2+muted@n2/7(100)");
  EXPECT_EQ(this->members_of(a), ia + ":alice#1@n1/1(100) " + ia + ":bob#2+muted@n2/7(100) ");
  EXPECT_FALSE(s.room_leave(a, "bob", "n1", 2).value()) << "the stale connection's leave";
  EXPECT_FALSE(s.room_leave(a, "bob", "n2", 2).value()) << "another connection of the node";
  EXPECT_FALSE(s.room_leave(a, "bob", "n1", 7).value()) << "the conn_id on another node";
  EXPECT_EQ(this->members_of(a), ia + ":alice#1@n1/1(100) " + ia + ":bob#2+muted@n2/7(100) ");
  auto left = s.room_leave(a, "bob", "n2", 7).value();
  ASSERT_TRUE(left);
  EXPECT_EQ(this->show_member(*left), ia + ":bob#2+muted@n2/7(100)");
  EXPECT_FALSE(s.room_leave(a, "bob", "n2", 7).value());
  EXPECT_FALSE(s.room_leave(a + 1, "bob", "n2", 7).value()) << "no such room";
  EXPECT_EQ(this->members_of(a), ia + ":alice#1@n1/1(100) ");
}

// At max_members a new member is refused; a member moving is not a new one.
TYPED_TEST(StoreSuite, ARoomIsFullAtMaxMembers) {
  auto& s = *this->s_;
  const RoomId a = this->make_room("a", 2);
  ASSERT_TRUE(this->join(a, "alice", "n1", 1));
  ASSERT_TRUE(this->join(a, "bob", "n1", 2));
  auto full = this->join(a, "carol", "n1", 3);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Errc::room_full);
  auto moved = this->join(a, "alice", "n2", 4);
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_FALSE(moved->fresh);
  EXPECT_EQ(moved->member.member_no, 1u);
  EXPECT_EQ(s.room_get(a).value()->member_count, 2);
  ASSERT_TRUE(s.room_leave(a, "bob", "n1", 2).value());
  auto j = this->join(a, "carol", "n1", 3);
  ASSERT_TRUE(j) << j.error().message;
  EXPECT_EQ(j->member.member_no, 3u) << "the refused join took no number";
  const RoomId none = this->make_room("none", 0);
  EXPECT_EQ(this->join(none, "alice", "n1", 1).error().code, Errc::room_full);
}

// The owner's removal: the row goes whatever its connection, the user stays out, a second
// removal is no error, and a user may be kept out before they join.
TYPED_TEST(StoreSuite, ARemovedUserIsKeptOut) {
  auto& s = *this->s_;
  const RoomId a = this->make_room("a"), b = this->make_room("b");
  ASSERT_TRUE(this->join(a, "alice", "n1", 1, 100));
  ASSERT_TRUE(this->join(a, "bob", "n2", 5, 100));
  ASSERT_TRUE(this->join(b, "bob", "n2", 6, 100));
  auto gone = this->remove(a, "bob");
  ASSERT_TRUE(gone) << gone.error().message;
  ASSERT_TRUE(gone.value());
  const std::string ia = std::to_string(a);
  EXPECT_EQ(this->show_member(*gone.value()), ia + ":bob#2@n2/5(100)");
  EXPECT_EQ(this->members_of(a), ia + ":alice#1@n1/1(100) ");
  auto refused = this->join(a, "bob", "n2", 7);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::forbidden);
  EXPECT_EQ(refused.error().message, "removed from this room");
  EXPECT_EQ(this->members_of(b), std::to_string(b) + ":bob#1@n2/6(100) ") << "only from a";
  gone = this->remove(a, "bob");
  ASSERT_TRUE(gone) << "a second removal";
  EXPECT_FALSE(gone.value());
  gone = this->remove(a, "carol");  // never joined: kept out ahead
  ASSERT_TRUE(gone) << gone.error().message;
  EXPECT_FALSE(gone.value());
  EXPECT_EQ(this->join(a, "carol", "n1", 8).error().code, Errc::forbidden);
  EXPECT_EQ(this->remove(b + 1, "carol").error().code, Errc::not_found) << "no such room";
  EXPECT_EQ(this->remove(a, "nobody").error().code, Errc::not_found) << "no such user";
  EXPECT_EQ(this->join(b + 1, "carol", "n1", 8).error().code, Errc::not_found) << "no such room";
  EXPECT_EQ(this->join(a, "nobody", "n1", 8).error().code, Errc::not_found) << "no such user";
  EXPECT_EQ(s.count_rows().value().room_bans, 2);
  EXPECT_EQ(this->members_of(a), ia + ":alice#1@n1/1(100) ");
}

TYPED_TEST(StoreSuite, RoomMembersAreMutedAndUnmuted) {
  auto& s = *this->s_;
  const RoomId a = this->make_room("a");
  ASSERT_TRUE(this->join(a, "alice", "n1", 1));
  ASSERT_TRUE(s.room_set_muted(a, "alice", true));
  EXPECT_TRUE(s.room_members(a).value().at(0).muted);
  ASSERT_TRUE(s.room_set_muted(a, "alice", true)) << "muted already: no error";
  ASSERT_TRUE(s.room_set_muted(a, "alice", false));
  EXPECT_FALSE(s.room_members(a).value().at(0).muted);
  EXPECT_EQ(s.room_set_muted(a, "bob", true).error().code, Errc::not_found) << "not a member";
  EXPECT_EQ(s.room_set_muted(a + 1, "alice", true).error().code, Errc::not_found) << "no room";
}

// A node that stopped takes its members with it, every room's, and only its own; a moved
// member is no longer that node's.
TYPED_TEST(StoreSuite, ANodesMembersLeaveWithIt) {
  auto& s = *this->s_;
  const RoomId a = this->make_room("a"), b = this->make_room("b");
  ASSERT_TRUE(this->join(b, "bob", "n1", 2, 100));
  ASSERT_TRUE(this->join(a, "alice", "n1", 1, 100));
  ASSERT_TRUE(this->join(a, "carol", "n2", 1, 100));
  ASSERT_TRUE(this->join(a, "bob", "n1", 2, 100));
  ASSERT_TRUE(this->join(b, "alice", "n1", 3, 100));
  ASSERT_TRUE(this->join(b, "alice", "n2", 4, 100));  // moved to n2
  auto gone = s.room_leave_node("n1");
  ASSERT_TRUE(gone) << gone.error().message;
  const std::string ia = std::to_string(a), ib = std::to_string(b);
  EXPECT_EQ(this->show_members(gone.value()),
            ia + ":alice#1@n1/1(100) " + ia + ":bob#3@n1/2(100) " + ib + ":bob#1@n1/2(100) ");
  EXPECT_EQ(this->members_of(a), ia + ":carol#2@n2/1(100) ");
  EXPECT_EQ(this->members_of(b), ib + ":alice#2@n2/4(100) ");
  EXPECT_TRUE(s.room_leave_node("n1").value().empty());
  EXPECT_TRUE(s.room_leave_node("n3").value().empty());
  EXPECT_EQ(s.room_leave_node("n2").value().size(), 2u);
  EXPECT_EQ(s.room_get(a).value()->member_count, 0);
}

// A room's members and removed users go with it; its id is not given again.
TYPED_TEST(StoreSuite, DeletingARoomTakesItsMembersAndBans) {
  auto& s = *this->s_;
  const RoomId a = this->make_room("a"), b = this->make_room("b");
  ASSERT_TRUE(this->join(a, "alice", "n1", 1));
  ASSERT_TRUE(this->join(b, "alice", "n1", 1));
  ASSERT_TRUE(this->remove(a, "bob"));
  ASSERT_TRUE(this->remove(b, "bob"));
  ASSERT_TRUE(s.room_delete(b));
  EXPECT_FALSE(s.room_get(b).value());
  EXPECT_EQ(this->members_of(b), "");
  EXPECT_EQ(s.room_delete(b).error().code, Errc::not_found);
  EXPECT_EQ(this->join(b, "alice", "n1", 1).error().code, Errc::not_found);
  auto counts = s.count_rows().value();
  EXPECT_EQ(counts.rooms, 1);
  EXPECT_EQ(counts.room_bans, 1);
  EXPECT_EQ(this->members_of(a), std::to_string(a) + ":alice#1@n1/1(100) ");
  EXPECT_GT(this->make_room("c"), b);
}

// A sole node's start: nobody is connected, so no room has members; numbers go on.
TYPED_TEST(StoreSuite, RoomMembersAreClearedAndNumbersGoOn) {
  auto& s = *this->s_;
  const RoomId a = this->make_room("a"), b = this->make_room("b");
  ASSERT_TRUE(this->join(a, "alice", "n1", 1));
  ASSERT_TRUE(this->join(a, "bob", "n2", 1));
  ASSERT_TRUE(this->join(b, "carol", "n1", 2));
  ASSERT_TRUE(this->remove(b, "bob"));
  ASSERT_TRUE(s.room_members_clear());
  EXPECT_EQ(this->members_of(a), "");
  EXPECT_EQ(this->members_of(b), "");
  EXPECT_EQ(s.count_rows().value().room_bans, 1) << "removed users stay removed";
  EXPECT_EQ(this->join(a, "alice", "n1", 3).value().member.member_no, 3u);
  EXPECT_EQ(this->join(b, "bob", "n1", 3).error().code, Errc::forbidden);
}

// A join and a removal read and then write under the room's lock: only inside a transaction.
TYPED_TEST(StoreSuite, RoomJoinAndRemoveNeedATransaction) {
  auto& s = *this->s_;
  const RoomId a = this->make_room("a");
  EXPECT_EQ(s.room_join(a, "alice", "n1", 1, 1).error().code, Errc::internal);
  EXPECT_EQ(s.room_remove(a, "alice").error().code, Errc::internal);
  EXPECT_EQ(this->members_of(a), "");
}

TYPED_TEST(StoreSuite, ReopeningKeepsData) {
  // A second session (another connection) sees what the first committed.
  auto other = this->store_->open_session();
  ASSERT_TRUE(other);
  EXPECT_TRUE(other.value()->find_user("carol").value());
}

}  // namespace

// SQLite only: under a steady write load the WAL is copied into the database and starts over,
// instead of growing with every message (it once reached gigabytes with no checkpoint at all).
TEST(SqliteWal, IsCheckpointedAndStartsOver) {
  auto dir =
      std::filesystem::path(::testing::TempDir()) / ("converge_wal_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  SqliteOptions o{(dir / "t.db").string(), false};
  o.wal_reset_frames = 256;  // 1 MiB
  auto store = open_sqlite_store(o);
  ASSERT_TRUE(store);
  auto s = store.value()->open_session().value();
  ASSERT_TRUE(s->create_user(User{"alice", "alice", false, 1}, "h"));
  Conversation c;
  c.type = ConversationType::group;
  c.name = "g";
  c.owner = "alice";
  c.members.push_back(Member{"alice", false});
  auto id = s->create_conversation(c, "").value();
  const std::string body(2000, 'x');
  Seq seq = 0;
  int finished = 0;                            // batches after which the writer's part ran
  for (int batch = 0; batch < 200; ++batch) {  // ~8 MiB of messages, 40 pages a batch
    ASSERT_TRUE(s->begin());
    for (int i = 0; i < 20; ++i) {
      Message m;
      m.conversation_id = id;
      m.seq = ++seq;
      m.publisher_id = m.publisher_name = "alice";
      m.body = body;
      m.client_msg_id = "c" + std::to_string(seq);
      ASSERT_TRUE(s->insert_message(m, "").value());
    }
    ASSERT_TRUE(s->set_last_seq(id, seq));
    ASSERT_TRUE(s->commit());
    finished += s->maintain() ? 1 : 0;  // what the writer does between batches
  }
  EXPECT_GT(finished, 0) << "the writer finished some checkpoints (and says so)";
  EXPECT_LT(finished, 50) << "only when the WAL was past its reset size";
  auto db = std::filesystem::file_size(dir / "t.db");
  auto wal = std::filesystem::file_size(dir / "t.db-wal");
  EXPECT_GT(db, 6u << 20) << "the messages reached the database file";
  // The WAL file grows in 1 MiB reservations (see wal_vfs.hpp): 2 MiB of frames at most.
  EXPECT_LE(wal, 3u << 20) << "the WAL started over near 1 MiB instead of holding everything";
  EXPECT_EQ(s->messages_after(id, 0, 5000).value().size(), static_cast<std::size_t>(seq));
  s.reset();
  store.value().reset();
  std::filesystem::remove_all(dir);
}

#ifdef CONVERGE_STORE_TEST_POSTGRES
// PostgreSQL only: what several nodes sharing one database need, and how lost connections and
// PostgreSQL's aborted transactions surface.
namespace {

class PostgresOnly : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = pgtest::skip_reason(); !why.empty()) GTEST_SKIP() << why;
    auto db = pgtest::create_database();
    ASSERT_TRUE(db) << db.error().message;
    db_ = db.value();
  }
  void TearDown() override {
    if (!db_.name.empty()) (void)pgtest::drop_database(db_.name);
  }

  // A node's store on the test's database.
  std::unique_ptr<Store> node(PostgresOptions o = {}) {
    o.url = db_.url;
    auto s = open_postgres_store(o);
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(s.value()) : nullptr;
  }
  static std::unique_ptr<StoreSession> session(Store& store) {
    auto s = store.open_session();
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(s.value()) : nullptr;
  }
  static ConversationId group_of_alice_and_bob(StoreSession& s) {
    for (auto id : {"alice", "bob"}) EXPECT_TRUE(s.create_user(User{id, id, false, 1}, "h"));
    Conversation c;
    c.name = "g";
    c.owner = "alice";
    c.members = {{"alice", false}, {"bob", false}};
    auto id = s.create_conversation(c, "");
    EXPECT_TRUE(id) << id.error().message;
    return id ? id.value() : 0;
  }
  static Message message(ConversationId id, Seq seq, const std::string& from,
                         const std::string& cmid = "") {
    Message m;
    m.conversation_id = id;
    m.seq = seq;
    m.publisher_id = m.publisher_name = from;
    m.body = "m" + std::to_string(seq);
    m.client_msg_id = cmid;
    m.ts_ms = seq;
    return m;
  }
  std::string sql(const std::string& q) {
    auto r = pgtest::query(db_.url, q);
    EXPECT_TRUE(r) << r.error().message;
    return r ? r.value() : "";
  }
  // Asks the server until `q` answers `want` (10 s at most): a round trip, not a guessed sleep.
  bool server_says(const std::string& q, const std::string& want) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (sql(q) == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  // Ends every other connection to the test's database, as a server restart would.
  void kill_connections() {
    EXPECT_NE(sql("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                  "WHERE datname = current_database() AND pid <> pg_backend_pid()"),
              "0");
  }

  pgtest::Database db_;
};

// Two nodes' writers on one conversation: the second one's lock_last_seq waits for the first's
// commit and then reads the seq it stored.
TEST_F(PostgresOnly, LockLastSeqHoldsTheOtherNodeUntilCommit) {
  auto node_a = node(), node_b = node();
  ASSERT_TRUE(node_a && node_b);
  auto a = session(*node_a), b = session(*node_b);
  auto id = group_of_alice_and_bob(*a);
  ASSERT_TRUE(a->begin());
  ASSERT_EQ(a->lock_last_seq(id).value(), 0);
  Result<Seq> b_saw = make_error(Errc::internal, "not run");
  std::thread t([&] {
    EXPECT_TRUE(b->begin());
    b_saw = b->lock_last_seq(id);
  });
  EXPECT_TRUE(
      server_says("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                  "current_database() AND wait_event_type = 'Lock'",
                  "1"))
      << "node B is not waiting for node A's row lock";
  ASSERT_TRUE(a->insert_message(message(id, 1, "alice"), "").value());
  ASSERT_TRUE(a->set_last_seq(id, 1));
  ASSERT_TRUE(a->commit());
  t.join();
  ASSERT_TRUE(b_saw) << b_saw.error().message;
  EXPECT_EQ(b_saw.value(), 1);
  ASSERT_TRUE(b->insert_message(message(id, 2, "bob"), "").value());
  ASSERT_TRUE(b->set_last_seq(id, 2));
  ASSERT_TRUE(b->commit());
  EXPECT_EQ(a->get_conversation(id).value()->last_seq, 2);
}

// Two nodes' writers racing on one conversation, batches of 1-3 messages: every insert succeeds
// (no seq is handed out twice) and the seqs are 1..N without a gap.
TEST_F(PostgresOnly, RacingNodesGetGaplessSeqs) {
  auto first = node();
  ASSERT_TRUE(first);
  ConversationId id = 0;
  {
    auto s = session(*first);
    id = group_of_alice_and_bob(*s);
  }
  constexpr int kBatches = 150;
  auto writer = [&](const std::string& who) {
    auto store = node();
    auto s = session(*store);
    for (int batch = 0; batch < kBatches; ++batch) {
      ASSERT_TRUE(s->begin());
      auto last = s->lock_last_seq(id);
      ASSERT_TRUE(last) << last.error().message;
      Seq seq = last.value();
      for (int i = 0; i <= batch % 3; ++i) {
        ++seq;
        auto stored = s->insert_message(
            message(id, seq, who, who + "-" + std::to_string(batch) + "-" + std::to_string(i)), "");
        ASSERT_TRUE(stored && stored.value()) << who << " seq " << seq;
      }
      ASSERT_TRUE(s->set_last_seq(id, seq));
      ASSERT_TRUE(s->commit());
    }
  };
  std::thread alice([&] { writer("alice"); });
  std::thread bob([&] { writer("bob"); });
  alice.join();
  bob.join();
  const Seq total = 2 * (kBatches / 3) * (1 + 2 + 3);
  auto s = session(*first);
  auto all = s->messages_after(id, 0, 10 * total).value();
  ASSERT_EQ(all.size(), static_cast<std::size_t>(total));
  for (std::size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i].seq, static_cast<Seq>(i + 1));
  EXPECT_EQ(s->get_conversation(id).value()->last_seq, total);
}

// Four nodes starting together on an empty database: each version is applied once, and every
// node comes up.
TEST_F(PostgresOnly, MigrationsRunOnceWhenNodesStartTogether) {
  constexpr int kNodes = 4;
  std::vector<std::unique_ptr<Store>> nodes(kNodes);
  std::vector<std::string> errors(kNodes);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kNodes; ++i)
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < kNodes) std::this_thread::yield();
      auto s = open_postgres_store(PostgresOptions{db_.url});
      if (s)
        nodes[static_cast<std::size_t>(i)] = std::move(s.value());
      else
        errors[static_cast<std::size_t>(i)] = s.error().message;
    });
  for (auto& t : threads) t.join();
  for (int i = 0; i < kNodes; ++i) {
    ASSERT_TRUE(nodes[static_cast<std::size_t>(i)]) << errors[static_cast<std::size_t>(i)];
    auto s = session(*nodes[static_cast<std::size_t>(i)]);
    EXPECT_TRUE(s->create_user(User{"u" + std::to_string(i), "u", false, 1}, "h"));
  }
  const auto applied = sql("SELECT count(*) || ' ' || max(version) FROM schema_migrations");
  EXPECT_EQ(applied.substr(0, applied.find(' ')), applied.substr(applied.find(' ') + 1))
      << "versions applied / newest version: " << applied;
  EXPECT_NE(applied.substr(0, 1), "0");
  EXPECT_TRUE(node()) << "a later start finds nothing to do";
  EXPECT_EQ(sql("SELECT count(*) || ' ' || max(version) FROM schema_migrations"), applied);
}

// A lost connection is unavailable inside a transaction (its work died with it) and replaced by
// the next begin(); a transaction whose BEGIN had not gone out yet, or a read outside a
// transaction, goes to a new connection without the caller noticing; a write outside a
// transaction that would not be the same twice (an INSERT) is not sent again.
TEST_F(PostgresOnly, LostConnectionIsUnavailableAndReplacedOnTheNextBegin) {
  auto store = node();
  ASSERT_TRUE(store);
  auto s = session(*store);
  auto id = group_of_alice_and_bob(*s);

  ASSERT_TRUE(s->begin());
  ASSERT_EQ(s->lock_last_seq(id).value(), 0);
  kill_connections();
  auto lost = s->insert_message(message(id, 1, "alice"), "");
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code, Errc::unavailable) << lost.error().message;
  EXPECT_EQ(s->set_last_seq(id, 1).error().code, Errc::unavailable);
  EXPECT_FALSE(s->commit());
  s->rollback();

  ASSERT_TRUE(s->find_user("alice"));  // a new connection
  kill_connections();                  // and it is lost while idle, as in a server restart
  ASSERT_TRUE(s->begin());
  auto last = s->lock_last_seq(id);
  ASSERT_TRUE(last) << last.error().message;
  EXPECT_EQ(last.value(), 0) << "nothing of the lost transaction was stored";
  ASSERT_TRUE(s->insert_message(message(id, 1, "alice"), "").value());
  ASSERT_TRUE(s->set_last_seq(id, 1));
  ASSERT_TRUE(s->commit());

  kill_connections();
  auto read = s->find_user("alice");
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_TRUE(read.value());

  kill_connections();
  auto write = s->create_user(User{"carol", "carol", false, 1}, "h");
  ASSERT_FALSE(write);
  EXPECT_EQ(write.error().code, Errc::unavailable);
  EXPECT_FALSE(s->find_user("carol").value());
  EXPECT_EQ(s->messages_after(id, 0, 10).value().size(), 1u);
}

// Unlike SQLite, a failed statement aborts PostgreSQL's transaction: what follows fails, and the
// commit says so instead of committing half of it. (The writer puts a savepoint around whatever
// is expected to fail: see AFailedJobUnderASavepointSparesTheBatch.)
TEST_F(PostgresOnly, AFailedStatementFailsTheCommit) {
  auto store = node();
  ASSERT_TRUE(store);
  auto s = session(*store);
  auto id = group_of_alice_and_bob(*s);
  ASSERT_TRUE(s->begin());
  ASSERT_TRUE(s->set_last_seq(id, 7));
  EXPECT_EQ(s->create_user(User{"alice", "A", false, 1}, "h").error().code, Errc::conflict);
  ASSERT_TRUE(s->savepoint());  // sent with the next statement, which fails with it
  EXPECT_FALSE(s->find_user("bob"));
  auto committed = s->commit();
  ASSERT_FALSE(committed);
  EXPECT_EQ(committed.error().code, Errc::conflict) << committed.error().message;
  EXPECT_EQ(s->get_conversation(id).value()->last_seq, 0);
}

// Text PostgreSQL cannot hold (a NUL byte, invalid UTF-8) is refused before it reaches the
// server, so the batch's other messages still commit.
TEST_F(PostgresOnly, UnstorableTextIsRefusedWithoutAbortingTheBatch) {
  auto store = node();
  ASSERT_TRUE(store);
  auto s = session(*store);
  auto id = group_of_alice_and_bob(*s);
  ASSERT_TRUE(s->begin());
  ASSERT_EQ(s->lock_last_seq(id).value(), 0);
  for (std::string body :
       {std::string("a\0b", 3), std::string("\xff"), std::string("\xed\xa0\x80")}) {
    auto m = message(id, 1, "alice");
    m.body = body;
    auto r = s->insert_message(m, "");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::bad_request);
  }
  auto m = message(id, 1, "alice");
  m.body = "h\xc3\xa9llo \xf0\x9f\x91\x8b";
  ASSERT_TRUE(s->insert_message(m, "").value());
  ASSERT_TRUE(s->set_last_seq(id, 1));
  ASSERT_TRUE(s->commit());
  auto all = s->messages_after(id, 0, 10).value();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].body, m.body);
}

TEST_F(PostgresOnly, SessionsAreCappedByMaxSessions) {
  PostgresOptions o;
  o.max_sessions = 2;
  auto store = node(o);
  ASSERT_TRUE(store);
  auto a = store->open_session(), b = store->open_session();
  ASSERT_TRUE(a && b);
  auto c = store->open_session();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::unavailable);
  a.value().reset();
  EXPECT_TRUE(store->open_session());
}

// Voice rooms on several nodes: every change of a room's members waits for the room's row
// lock, and then reads what the holder committed.
class PostgresRooms : public PostgresOnly {
 protected:
  void SetUp() override {
    PostgresOnly::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    node_a_ = node();
    node_b_ = node();
    ASSERT_TRUE(node_a_ && node_b_);
    a_ = session(*node_a_);
    b_ = session(*node_b_);
    ASSERT_TRUE(a_ && b_);
    for (auto id : {"alice", "bob", "carol"})
      ASSERT_TRUE(a_->create_user(User{id, id, false, 1}, "h"));
  }
  RoomId room(int64_t max_members) {
    auto id = a_->room_create(Room{0, "r", "alice", max_members, 1, 0});
    EXPECT_TRUE(id) << id.error().message;
    return id ? id.value() : 0;
  }
  // Until node B's session waits for a lock node A holds.
  bool b_waits() {
    return server_says(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
        "wait_event_type = 'Lock'",
        "1");
  }

  std::unique_ptr<Store> node_a_, node_b_;
  std::unique_ptr<StoreSession> a_, b_;
};

// Node B's join into the last place waits for node A's join into it, and then finds it taken.
TEST_F(PostgresRooms, AJoinWaitsForTheOtherNodesJoinAndCountsIt) {
  const RoomId r = room(1);
  ASSERT_TRUE(a_->begin());
  ASSERT_TRUE(a_->room_join(r, "alice", "n1", 1, 1));
  Result<StoreSession::RoomJoin> b_got = make_error(Errc::internal, "not run");
  std::thread t([&] {
    EXPECT_TRUE(b_->begin());
    b_got = b_->room_join(r, "bob", "n2", 1, 1);
    b_->rollback();
  });
  EXPECT_TRUE(b_waits()) << "node B is not waiting for the room's row lock";
  ASSERT_TRUE(a_->commit());
  t.join();
  ASSERT_FALSE(b_got);
  EXPECT_EQ(b_got.error().code, Errc::room_full) << b_got.error().message;
  EXPECT_EQ(a_->room_members(r).value().size(), 1u);
}

// A join waiting for the owner's removal of that user finds the ban once it is committed (its
// snapshot of before the wait had none).
TEST_F(PostgresRooms, AJoinWaitingForARemovalIsRefused) {
  const RoomId r = room(10);
  ASSERT_TRUE(a_->begin());
  ASSERT_TRUE(a_->room_join(r, "bob", "n1", 1, 1));
  ASSERT_TRUE(a_->commit());
  ASSERT_TRUE(a_->begin());
  ASSERT_TRUE(a_->room_remove(r, "bob").value());
  Result<StoreSession::RoomJoin> b_got = make_error(Errc::internal, "not run");
  std::thread t([&] {
    EXPECT_TRUE(b_->begin());
    b_got = b_->room_join(r, "bob", "n2", 2, 2);
    b_->rollback();
  });
  EXPECT_TRUE(b_waits()) << "node B is not waiting for the room's row lock";
  ASSERT_TRUE(a_->commit());
  t.join();
  ASSERT_FALSE(b_got);
  EXPECT_EQ(b_got.error().code, Errc::forbidden) << b_got.error().message;
  EXPECT_TRUE(a_->room_members(r).value().empty());
}

// Two nodes taking a dead node's members at once: each row goes to one of them.
TEST_F(PostgresRooms, TwoNodesTakingADeadNodesMembersGetDisjointRows) {
  const RoomId r = room(10), q = room(10);
  struct In {
    RoomId room;
    const char* user;
    const char* node;
  };
  for (auto in :
       {In{r, "alice", "dead"}, In{r, "bob", "n1"}, In{q, "bob", "dead"}, In{q, "carol", "dead"}}) {
    ASSERT_TRUE(a_->begin());
    ASSERT_TRUE(a_->room_join(in.room, in.user, in.node, 1, 1));
    ASSERT_TRUE(a_->commit());
  }
  ASSERT_TRUE(a_->begin());
  auto a_got = a_->room_leave_node("dead");
  ASSERT_TRUE(a_got) << a_got.error().message;
  Result<std::vector<RoomMember>> b_got = make_error(Errc::internal, "not run");
  std::thread t([&] {
    EXPECT_TRUE(b_->begin());
    b_got = b_->room_leave_node("dead");
    EXPECT_TRUE(b_->commit());
  });
  EXPECT_TRUE(b_waits()) << "node B is not waiting for node A's rows";
  ASSERT_TRUE(a_->commit());
  t.join();
  ASSERT_TRUE(b_got) << b_got.error().message;
  EXPECT_EQ(a_got->size(), 3u);
  EXPECT_TRUE(b_got->empty());
  EXPECT_EQ(a_->room_members(r).value().size(), 1u);
  EXPECT_TRUE(a_->room_members(q).value().empty());
}

// Two nodes' writers racing users into one room: exactly max_members get in, numbered 1..max.
TEST_F(PostgresRooms, RacingJoinsStopAtMaxMembers) {
  constexpr int kUsers = 12;
  for (int i = 0; i < kUsers; ++i)
    ASSERT_TRUE(a_->create_user(User{"u" + std::to_string(i), "u", false, 1}, "h"));
  const RoomId r = room(5);
  std::atomic<int> full{0}, ready{0};
  auto joiner = [&](StoreSession* s, int first, const std::string& node_id) {
    ready.fetch_add(1);
    while (ready.load() < 2) std::this_thread::yield();
    for (int i = first; i < kUsers; i += 2) {
      ASSERT_TRUE(s->begin());
      auto j = s->room_join(r, "u" + std::to_string(i), node_id, i, 1);
      if (j) {
        ASSERT_TRUE(s->commit());
        continue;
      }
      EXPECT_EQ(j.error().code, Errc::room_full) << j.error().message;
      full.fetch_add(1);
      s->rollback();
    }
  };
  std::thread ta([&] { joiner(a_.get(), 0, "n1"); });
  std::thread tb([&] { joiner(b_.get(), 1, "n2"); });
  ta.join();
  tb.join();
  EXPECT_EQ(full.load(), kUsers - 5);
  auto members = a_->room_members(r).value();
  ASSERT_EQ(members.size(), 5u);
  for (std::size_t i = 0; i < members.size(); ++i)
    EXPECT_EQ(members[i].member_no, static_cast<uint32_t>(i + 1));
}

TEST(PostgresUrl, AMalformedUrlIsABadRequest) {
  auto s = open_postgres_store(PostgresOptions{"postgresql://[::1"});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::bad_request) << s.error().message;
}

}  // namespace
#endif
