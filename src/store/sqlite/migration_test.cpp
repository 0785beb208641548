// Schema migrations of the SQLite engine applied to data written by an older version.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include "store/sqlite/sqlite_store.hpp"

namespace {

using namespace converge;
namespace fs = std::filesystem;

void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, &err), SQLITE_OK)
      << sql << ": " << (err ? err : "");
}

// Version 2 folds user ids to lower case (model.hpp): a database of version 1 with mixed-case
// ids reaches every table, direct pairs are re-keyed, and an id whose folded form is taken
// keeps its old spelling.
TEST(SqliteMigration, UserIdsAreFoldedToLowerCase) {
  auto dir = fs::path(::testing::TempDir()) / ("migrate-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto path = (dir / "c.db").string();
  { ASSERT_TRUE(open_sqlite_store(SqliteOptions{path})); }  // the current schema
  {
    // What version 1 allowed: ids in any case. Then back to version 1, as an old node left it.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    exec(db,
         // Version 8's tables, version 7's columns (after the triggers that name them) and
         // version 6's first: the rows below are version 1's.
         "DROP TABLE room_bans; DROP TABLE room_members; DROP TABLE rooms;"
         "DROP TRIGGER role_version; DROP TRIGGER settings_version;"
         "DROP TABLE requests; DROP TABLE friends;"
         "ALTER TABLE members DROP COLUMN role; ALTER TABLE conversations DROP COLUMN notice;"
         "ALTER TABLE conversations DROP COLUMN join_policy;"
         "ALTER TABLE users DROP COLUMN direct_policy;"
         "ALTER TABLE messages DROP COLUMN mentions;"
         "INSERT INTO users VALUES('Alice','Alice','h',0,1),('bob','bob','h',0,1),"
         "('Zed','Zed','h',0,1),('ZED','ZED2','h',0,1);"
         "INSERT INTO tokens VALUES('t1','Alice','d',99999999999999);"
         "INSERT INTO conversations(id,type,name,owner,direct_key,last_seq,created_at) "
         "VALUES(1,'direct','','Alice','Alice|bob',1,1),(2,'group','g','Alice',NULL,0,1);"
         "INSERT INTO members VALUES(1,'Alice',0,1),(1,'bob',0,1),(2,'Alice',0,1),(2,'Zed',0,1);"
         "INSERT INTO messages VALUES(1,1,'Alice','Alice','text','hi','c1',NULL,1);"
         "INSERT INTO files VALUES('f','s','n','text/plain',1,'Alice',1);"
         "INSERT INTO cursors VALUES('Alice','d',1,1,1);"
         // Undo what later versions added, so the file is as version 1 left it.
         "DROP TRIGGER members_version_added; DROP TRIGGER members_version_removed;"
         "DROP TRIGGER owner_version; DROP TABLE push_outbox; DROP TABLE push_pending;"
         "DROP TABLE push_dead;"
         "ALTER TABLE conversations DROP COLUMN members_version; DROP TABLE presence;"
         "DROP TABLE mqtt_sessions; DROP TABLE mqtt_subscriptions;"
         "PRAGMA user_version=1;");
    sqlite3_close(db);
  }
  auto st = open_sqlite_store(SqliteOptions{path});
  ASSERT_TRUE(st) << st.error().message;
  auto s = st.value()->open_session().value();
  EXPECT_TRUE(s->find_user("alice").value().has_value());
  EXPECT_FALSE(s->find_user("Alice").value().has_value());
  EXPECT_TRUE(s->find_user("Zed").value().has_value()) << "a colliding id keeps its spelling";
  EXPECT_TRUE(s->find_user("ZED").value().has_value());
  auto tok = s->find_token("t1", 0).value();
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->user_id, "alice");
  EXPECT_EQ(s->find_direct("alice|bob").value(), std::optional<ConversationId>(1));
  auto c = s->get_conversation(1).value();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->owner, "alice");
  // Version 7's defaults: rows of before it are members, the owner is the owner, a group
  // takes applications, anyone may open a direct conversation.
  auto g = s->get_conversation(2).value();
  ASSERT_TRUE(g);
  ASSERT_EQ(g->members.size(), 2u);
  for (auto& m : g->members)
    EXPECT_EQ(m.role, m.user_id == "alice" ? Role::owner : Role::member) << m.user_id;
  EXPECT_EQ(g->join_policy, JoinPolicy::approval);
  EXPECT_EQ(g->notice, "");
  EXPECT_EQ(s->find_user("bob").value()->user.direct_policy, DirectPolicy::anyone);
  EXPECT_TRUE(s->list_friends("alice").value().empty());
  EXPECT_EQ(s->count_rows().value().requests, 0);
  EXPECT_EQ(s->list_conversations("alice").value().size(), 2u);
  auto m = s->messages_after(1, 0, 10).value();
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].publisher_id, "alice");
  EXPECT_TRUE(s->find_sent("alice", "c1").value().has_value());
  EXPECT_EQ(s->get_file("f").value()->uploader, "alice");
  EXPECT_EQ(s->cursors("alice", "d").value().size(), 1u);
  // Version 8: voice rooms, none yet; the first one's id is 1.
  EXPECT_EQ(s->count_rows().value().rooms, 0);
  EXPECT_EQ(s->room_create(Room{0, "r", "alice", 2, 1, 0}).value(), 1u);
  fs::remove_all(dir);
}

// Version 9 puts client_msg_id first in messages_dedupe: a database of version 8 keeps its
// retries (found, and a second insert of the same key is refused) under the new index.
TEST(SqliteMigration, RetriesSurviveTheDedupeIndexReorder) {
  auto dir = fs::path(::testing::TempDir()) / ("migrate9-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto path = (dir / "c.db").string();
  { ASSERT_TRUE(open_sqlite_store(SqliteOptions{path})); }
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    exec(db,
         "DROP INDEX messages_dedupe;"
         "CREATE UNIQUE INDEX messages_dedupe ON messages(publisher_id, client_msg_id)"
         "  WHERE client_msg_id IS NOT NULL;"
         "INSERT INTO users(id,name,password_hash,is_admin,created_at) "
         "VALUES('alice','Alice','h',0,1);"
         "INSERT INTO conversations(id,type,name,owner,direct_key,last_seq,created_at) "
         "VALUES(1,'group','g','alice',NULL,2,1);"
         "INSERT INTO members(conversation_id,user_id,muted,joined_at,role) "
         "VALUES(1,'alice',0,1,'owner');"
         "INSERT INTO messages(conversation_id,seq,publisher_id,publisher_name,type,body,"
         "client_msg_id,file_id,ts) VALUES(1,1,'alice','Alice','text','a','c1',NULL,5),"
         "(1,2,'alice','Alice','text','b',NULL,NULL,6);"
         "PRAGMA user_version=8;");
    sqlite3_close(db);
  }
  auto st = open_sqlite_store(SqliteOptions{path});
  ASSERT_TRUE(st) << st.error().message;
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt* q = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master WHERE name='messages_dedupe'",
                                 -1, &q, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    std::string sql = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    EXPECT_NE(sql.find("(client_msg_id, publisher_id)"), std::string::npos) << sql;
    sqlite3_finalize(q);
    sqlite3_close(db);
  }
  auto s = st.value()->open_session().value();
  auto found = s->find_sent("alice", "c1").value();
  ASSERT_TRUE(found);
  EXPECT_EQ(found->conversation_id, 1);
  EXPECT_EQ(found->seq, 1);
  EXPECT_EQ(found->ts_ms, 5);
  EXPECT_FALSE(s->find_sent("bob", "c1").value()) << "the key is the pair";
  Message again;
  again.conversation_id = 1;
  again.seq = 3;
  again.publisher_id = "alice";
  again.publisher_name = "Alice";
  again.body = "a";
  again.client_msg_id = "c1";
  again.ts_ms = 7;
  EXPECT_FALSE(s->insert_message(again, "").value()) << "the retry is refused";
  EXPECT_EQ(s->messages_after(1, 0, 10).value().size(), 2u) << "and nothing was stored";
  fs::remove_all(dir);
}

}  // namespace
