// The store suite, written once and run against every engine (a typed test per engine).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "store/sqlite/sqlite_store.hpp"

using namespace converge;

namespace {

struct SqliteEngine {
  static Result<std::unique_ptr<Store>> open() {
    static int n = 0;
    auto dir = std::filesystem::path(::testing::TempDir()) /
               ("converge_store_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return open_sqlite_store(SqliteOptions{(dir / "t.db").string(), false});
  }
};

template <class Engine>
class StoreSuite : public ::testing::Test {
 protected:
  void SetUp() override {
    auto st = Engine::open();
    ASSERT_TRUE(st) << st.error().message;
    store_ = std::move(st.value());
    auto s = store_->open_session();
    ASSERT_TRUE(s);
    s_ = std::move(s.value());
    for (auto id : {"alice", "bob", "carol"})
      ASSERT_TRUE(s_->create_user(User{id, id, false, 1}, "h"));
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

  std::unique_ptr<Store> store_;
  std::unique_ptr<StoreSession> s_;
};

using Engines = ::testing::Types<SqliteEngine>;
TYPED_TEST_SUITE(StoreSuite, Engines);

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
    s->maintain();  // what the writer does between batches
  }
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
