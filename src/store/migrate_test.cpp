// converge migrate's copy (store/copy.hpp): a node's SQLite store, filled through the ordinary
// StoreSession calls, copied into PostgreSQL and back into a new SQLite store, and compared
// table by table through the read API at each step. Also: a copy into a store that holds data
// is refused and writes nothing; a copy that fails part way leaves the target empty.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "store/copy.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/postgres/test_server.hpp"
#include "store/sqlite/sqlite_store.hpp"

using namespace converge;

namespace {

namespace fs = std::filesystem;

// --- renderings, so that a difference shows which field of which row ------------------------

std::string show(const FileMeta& f) {
  std::ostringstream o;
  o << "file{" << f.id << "," << f.sha256 << "," << f.name << "," << f.mime << "," << f.size << ","
    << f.uploader << "," << f.created_at_ms << "}";
  return o.str();
}

std::string show(const Message& m) {
  std::ostringstream o;
  o << m.conversation_id << "/" << m.seq << " " << m.publisher_id << "(" << m.publisher_name << ") "
    << message_type_name(m.type) << " [" << m.body << "] cmid=" << m.client_msg_id
    << " ts=" << m.ts_ms << (m.file ? " " + show(*m.file) : "")
    << (m.mentions.empty() ? "" : " mentions=" + join_mentions(m.mentions));
  return o.str();
}

std::string show(const Conversation& c) {
  std::ostringstream o;
  o << c.id << " " << conversation_type_name(c.type) << " [" << c.name << "] owner=" << c.owner
    << " last_seq=" << c.last_seq << " created=" << c.created_at_ms
    << " members_version=" << c.members_version << " notice=[" << c.notice
    << "] join_policy=" << join_policy_name(c.join_policy) << " members=";
  for (auto& m : c.members)
    o << m.user_id << "(" << role_name(m.role) << (m.muted ? ",muted" : "") << "),";
  return o.str();
}

std::string show(const UserRecord& u) {
  std::ostringstream o;
  o << u.user.id << " [" << u.user.name << "] admin=" << u.user.is_admin
    << " created=" << u.user.created_at_ms << " hash=" << u.password_hash
    << " direct_policy=" << direct_policy_name(u.user.direct_policy);
  return o.str();
}

std::string show(const Request& r) {
  std::ostringstream o;
  o << r.id << " " << request_kind_name(r.kind) << " " << r.conversation_id << " " << r.user_id
    << "<-" << r.from_id << " [" << r.text << "] " << request_status_name(r.status)
    << " by=" << r.decided_by << " created=" << r.created_at_ms << " decided=" << r.decided_at_ms
    << " expires=" << r.expires_at_ms;
  return o.str();
}

std::string show(const Friend& f) {
  return f.user_id + "@" + std::to_string(f.since_ms);
}

// A room as copied: member_count is left out (members are connections, not copied).
std::string show(const Room& r) {
  std::ostringstream o;
  o << r.id << " [" << r.name << "] owner=" << r.owner << " max=" << r.max_members
    << " created=" << r.created_at_ms;
  return o.str();
}

std::string show(const AuthContext& a) {
  std::ostringstream o;
  o << a.user_id << " [" << a.user_name << "] " << a.device_id << " admin=" << a.is_admin
    << " expires=" << a.expires_at_ms;
  return o.str();
}

// --- what the source holds, for the comparison -----------------------------------------------

struct Source {
  std::vector<std::string> users;
  std::vector<std::string> token_hashes;
  std::vector<std::pair<std::string, std::string>> devices;  // user, device
  std::vector<ConversationId> conversations;
  std::vector<std::string> direct_keys;
  std::vector<std::string> files;
  std::vector<std::string> requests;
  std::vector<RoomId> rooms;
  std::vector<std::pair<RoomId, std::string>> room_bans;
  int64_t messages = 0;
};

// The folders of SQLite stores the test made: removed when the binary's tests end.
std::vector<fs::path>& temp_dirs() {
  static std::vector<fs::path> dirs;
  return dirs;
}

class RemoveTempDirs final : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    for (auto& d : temp_dirs()) fs::remove_all(d, ec);
  }
};
[[maybe_unused]] auto* const kRemoveTempDirs =
    ::testing::AddGlobalTestEnvironment(new RemoveTempDirs);

fs::path temp_dir(const std::string& what) {
  static int n = 0;
  auto dir = fs::path(::testing::TempDir()) / ("converge_migrate_" + std::to_string(::getpid()) +
                                               "_" + what + "_" + std::to_string(n++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  temp_dirs().push_back(dir);
  return dir;
}

std::unique_ptr<Store> sqlite_store(const fs::path& dir) {
  auto s = open_sqlite_store(SqliteOptions{(dir / "converge.db").string(), false});
  EXPECT_TRUE(s) << s.error().message;
  return s ? std::move(s.value()) : nullptr;
}

std::unique_ptr<StoreSession> session(Store& store) {
  auto s = store.open_session();
  EXPECT_TRUE(s) << s.error().message;
  return s ? std::move(s.value()) : nullptr;
}

// Messages are appended as the writer appends them: under lock_conversation, numbered from its
// last_seq, which set_last_seq moves in the same transaction.
void append(StoreSession& s, ConversationId id, std::vector<Message> batch,
            const std::vector<std::string>& file_ids) {
  ASSERT_TRUE(s.begin());
  auto lock = s.lock_conversation(id);
  ASSERT_TRUE(lock) << lock.error().message;
  Seq seq = lock->last_seq;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    batch[i].conversation_id = id;
    batch[i].seq = ++seq;
    auto stored = s.insert_message(batch[i], file_ids[i]);
    ASSERT_TRUE(stored && stored.value()) << show(batch[i]);
  }
  ASSERT_TRUE(s.set_last_seq(id, seq));
  ASSERT_TRUE(s.commit());
}

// A node's data as `make run` leaves it: users with password hashes, tokens (one expired),
// a direct conversation and groups with members (one muted, one left, one joined later, the
// owner handed over, an admin), a group with a notice that takes invitations only, `messages`
// messages across them with and without client_msg_ids, a file and an image message, a system
// message, device cursors; requests of every kind in every status, a friendship, a user who
// takes direct conversations from friends only; voice rooms (one deleted: a gap in the ids)
// with members (connections: not copied) and removed users, one removed before joining.
Source fill(StoreSession& s, int messages) {
  Source src;
  const std::vector<std::string> people = {"alice", "bob", "carol", "dave", "erin.o-k_1"};
  for (std::size_t i = 0; i < people.size(); ++i) {
    User u{people[i], "Name of " + people[i] + " \xc3\xa9\xe2\x9c\x93", i == 0,
           1700000000000 + static_cast<int64_t>(i)};
    EXPECT_TRUE(s.create_user(u, "$argon2id$v=19$m=65536,t=2,p=1$salt" + people[i] + "$hash"));
    src.users.push_back(people[i]);
  }
  struct Token {
    const char* hash;
    const char* user;
    const char* device;
    int64_t expires;
  };
  for (auto t :
       {Token{"a1b2", "alice", "laptop", 4000000000000},
        Token{"a1b3", "alice", "phone", 4000000000000}, Token{"b0b0", "bob", "web", 4000000000000},
        Token{"c0c0", "carol", "phone", 1000}}) {  // expired: copied all the same
    EXPECT_TRUE(s.insert_token(t.hash, t.user, t.device, t.expires));
    src.token_hashes.push_back(t.hash);
    src.devices.emplace_back(t.user, t.device);
  }

  Conversation direct;
  direct.type = ConversationType::direct;
  direct.owner = "alice";
  direct.created_at_ms = 1700000001000;
  direct.members = {{"alice", false}, {"bob", false}};
  auto d = s.create_conversation(direct, "alice|bob");
  EXPECT_TRUE(d);
  Conversation group;
  group.type = ConversationType::group;
  group.name = "team \xf0\x9f\x9a\x80";
  group.owner = "alice";
  group.created_at_ms = 1700000002000;
  group.members = {{"alice", false}, {"bob", false}, {"carol", false}};
  auto g = s.create_conversation(group, "");
  EXPECT_TRUE(g);
  group.name = "empty";  // a conversation without a message: last_seq 0
  group.members = {{"dave", false}};
  group.owner = "dave";
  auto e = s.create_conversation(group, "");
  EXPECT_TRUE(e);
  EXPECT_TRUE(s.add_member(g.value(), "dave", 1700000003000));
  EXPECT_TRUE(s.add_member(g.value(), "erin.o-k_1", 1700000003000));
  EXPECT_TRUE(s.remove_member(g.value(), "carol"));
  EXPECT_TRUE(s.set_muted(g.value(), "bob", true));
  EXPECT_TRUE(s.set_owner(g.value(), "bob"));
  EXPECT_TRUE(s.set_role(g.value(), "dave", Role::admin));
  EXPECT_TRUE(s.update_conversation(e.value(), std::nullopt, "rules:\n1. \"be kind\" \xe2\x9c\x93",
                                    JoinPolicy::invite_only));
  EXPECT_TRUE(s.set_direct_policy("carol", DirectPolicy::friends));
  src.conversations = {d.value(), g.value(), e.value()};
  src.direct_keys = {"alice|bob"};

  EXPECT_TRUE(s.insert_file(
      FileMeta{"f0a1", std::string(64, 'a'), "plan.pdf", "application/pdf", 12345, "alice", 7}));
  EXPECT_TRUE(
      s.insert_file(FileMeta{"f0b2", std::string(64, 'b'), "cat.png", "image/png", 99, "bob", 8}));
  EXPECT_TRUE(  // uploaded, never sent: only its uploader may fetch it
      s.insert_file(FileMeta{"f0c3", std::string(64, 'c'), "draft", "text/plain", 1, "carol", 9}));
  src.files = {"f0a1", "f0b2", "f0c3"};

  // Batches of up to 50, alternating between the direct conversation and the group.
  int n = 0;
  while (n < messages) {
    const ConversationId id = (n / 50) % 2 == 0 ? d.value() : g.value();
    std::vector<Message> batch;
    std::vector<std::string> file_ids;
    for (int i = 0; i < 50 && n < messages; ++i, ++n) {
      Message m;
      m.publisher_id = id == d.value() ? (n % 2 ? "alice" : "bob") : people[n % 2 ? 1 : 3];
      m.publisher_name = "Name of " + m.publisher_id;
      m.body = "message " + std::to_string(n) + (n % 7 == 0 ? " \xe2\x80\x94 \"quoted\"\t\\" : "");
      if (n % 3 == 0) m.client_msg_id = "cm-" + std::to_string(n);
      if (n % 11 == 0)
        m.mentions = n % 22 == 0 ? std::vector<std::string>{"all"}
                                 : std::vector<std::string>{"alice", "bob"};
      m.ts_ms = 1700000010000 + n;
      std::string file_id;
      if (n == 10) {
        m.type = MessageType::file;
        file_id = "f0a1";
      } else if (n == 77) {
        m.type = MessageType::image;
        file_id = "f0b2";
      } else if (n == 60) {  // in the group: a change of it, stored by the node
        m.type = MessageType::system;
        m.body = R"({"event":"role","user":"dave","role":"admin"})";
      }
      batch.push_back(std::move(m));
      file_ids.push_back(file_id);
    }
    append(s, id, std::move(batch), file_ids);
  }
  src.messages = messages;

  EXPECT_TRUE(s.advance_acked("alice", "laptop", d.value(), 40));
  EXPECT_TRUE(s.advance_fetched("alice", "laptop", d.value(), 90));
  EXPECT_TRUE(s.advance_fetched("alice", "laptop", g.value(), 12));
  EXPECT_TRUE(s.advance_acked("alice", "phone", g.value(), 3));
  EXPECT_TRUE(s.advance_acked("bob", "web", d.value(), 1000));
  EXPECT_TRUE(s.advance_fetched("bob", "web", d.value(), 1000));

  // Requests: each kind, each status (one expired by requests_expire), texts that need quoting.
  struct Req {
    const char* id;
    RequestKind kind;
    ConversationId conversation;
    const char* user;
    const char* from;
    int64_t expires;
  };
  const int64_t far = 4000000000000;
  for (auto q : {Req{"rq-app-pending", RequestKind::application, g.value(), "carol", "carol", far},
                 Req{"rq-app-approved", RequestKind::application, e.value(), "erin.o-k_1",
                     "erin.o-k_1", far},
                 Req{"rq-app-cancelled", RequestKind::application, e.value(), "bob", "bob", far},
                 Req{"rq-inv-declined", RequestKind::invitation, g.value(), "carol", "bob", far},
                 Req{"rq-inv-expired", RequestKind::invitation, e.value(), "alice", "dave", 1000},
                 Req{"rq-fr-accepted", RequestKind::friend_request, 0, "bob", "alice", far},
                 Req{"rq-fr-pending", RequestKind::friend_request, 0, "dave", "carol", far}}) {
    Request r;
    r.id = q.id;
    r.kind = q.kind;
    r.conversation_id = q.conversation;
    r.user_id = q.user;
    r.from_id = q.from;
    r.text = std::string("let me in \xf0\x9f\x99\x8f \"") + q.id + "\"\t\\";
    r.created_at_ms = 1700000020000 + static_cast<int64_t>(src.requests.size());
    r.expires_at_ms = q.expires;
    EXPECT_TRUE(s.request_insert(r));
    src.requests.push_back(q.id);
  }
  EXPECT_TRUE(s.request_decide("rq-app-approved", RequestStatus::approved, "dave", 1700000030000, 0)
                  .value());
  EXPECT_TRUE(
      s.request_decide("rq-app-cancelled", RequestStatus::cancelled, "bob", 1700000030001, 0)
          .value());
  EXPECT_TRUE(
      s.request_decide("rq-inv-declined", RequestStatus::declined, "carol", 1700000030002, 0)
          .value());
  EXPECT_TRUE(
      s.request_decide("rq-fr-accepted", RequestStatus::accepted, "bob", 1700000030003, d.value())
          .value());
  EXPECT_EQ(s.requests_expire(1700000040000).value(), 1);
  EXPECT_TRUE(s.add_friend("bob", "alice", 1700000030003));

  auto room = [&](const std::string& name, const std::string& owner, int64_t max) {
    auto id = s.room_create(Room{0, name, owner, max, 1700000060000 + max, 0});
    EXPECT_TRUE(id) << id.error().message;
    return id ? id.value() : RoomId{0};
  };
  const RoomId voice = room("voice \xf0\x9f\x8e\xa4 \"q\"", "alice", 8);
  const RoomId gone = room("gone", "bob", 2);
  const RoomId quiet = room("quiet", "dave", 50);
  EXPECT_TRUE(s.room_delete(gone));
  EXPECT_TRUE(s.begin());
  for (auto user : {"alice", "bob", "carol"})
    EXPECT_TRUE(s.room_join(voice, user, "node-1", 1, 1700000061000));
  EXPECT_TRUE(s.room_join(quiet, "carol", "node-1", 2, 1700000061000));
  EXPECT_TRUE(s.room_remove(voice, "carol").value());  // a member
  EXPECT_FALSE(s.room_remove(voice, "dave").value());  // before joining
  EXPECT_FALSE(s.room_remove(quiet, "erin.o-k_1").value());
  EXPECT_TRUE(s.commit());
  src.rooms = {voice, quiet};
  src.room_bans = {{voice, "carol"}, {voice, "dave"}, {quiet, "erin.o-k_1"}};
  return src;
}

// Whether a join of `user` into `room` is refused as removed (the join rolled back: it only
// asks).
bool removed_from(StoreSession& s, RoomId room, const std::string& user) {
  EXPECT_TRUE(s.begin());
  auto j = s.room_join(room, user, "probe", 1, 1);
  s.rollback();
  EXPECT_TRUE(j || j.error().code == Errc::forbidden) << j.error().message;
  return !j && j.error().code == Errc::forbidden;
}

// --- the comparison, through the read API ----------------------------------------------------

std::vector<Message> all_messages(StoreSession& s, ConversationId id) {
  std::vector<Message> out;
  Seq after = 0;
  for (;;) {
    auto page = s.messages_after(id, after, 700);
    EXPECT_TRUE(page) << page.error().message;
    if (!page || page->empty()) break;
    after = page->back().seq;
    for (auto& m : page.value()) out.push_back(std::move(m));
  }
  return out;
}

template <class T>
std::vector<std::string> shown(const std::vector<T>& v) {
  std::vector<std::string> out;
  for (auto& x : v) out.push_back(show(x));
  return out;
}

// Every table of `b` says what `a`'s says.
void expect_same(StoreSession& a, StoreSession& b, const Source& src) {
  auto ca = a.count_rows(), cb = b.count_rows();
  ASSERT_TRUE(ca && cb);
  EXPECT_EQ(describe_counts(ca.value()), describe_counts(cb.value()));

  for (auto& id : src.users) {
    auto ua = a.find_user(id), ub = b.find_user(id);
    ASSERT_TRUE(ua && ub && ua.value() && ub.value()) << id;
    EXPECT_EQ(show(*ua.value()), show(*ub.value()));
    auto ga = a.count_groups(id), gb = b.count_groups(id);
    EXPECT_EQ(ga.value(), gb.value()) << id;
    auto la = a.list_conversations(id), lb = b.list_conversations(id);
    ASSERT_TRUE(la && lb);
    EXPECT_EQ(shown(la.value()), shown(lb.value())) << id;
  }
  {
    auto la = a.list_users(1000), lb = b.list_users(1000);
    ASSERT_TRUE(la && lb);
    ASSERT_EQ(la->size(), lb->size());
    for (std::size_t i = 0; i < la->size(); ++i) EXPECT_EQ((*la)[i].id, (*lb)[i].id);
  }
  for (auto& hash : src.token_hashes) {
    auto ta = a.find_token(hash, 0), tb = b.find_token(hash, 0);
    ASSERT_TRUE(ta && tb && ta.value() && tb.value()) << hash;
    EXPECT_EQ(show(*ta.value()), show(*tb.value()));
  }
  for (auto id : src.conversations) {
    auto ga = a.get_conversation(id), gb = b.get_conversation(id);
    ASSERT_TRUE(ga && gb && ga.value() && gb.value()) << id;
    EXPECT_EQ(show(*ga.value()), show(*gb.value()));
    auto ma = all_messages(a, id), mb = all_messages(b, id);
    EXPECT_EQ(static_cast<Seq>(mb.size()), gb.value()->last_seq) << "gapless up to last_seq";
    ASSERT_EQ(ma.size(), mb.size()) << id;
    for (std::size_t i = 0; i < ma.size(); ++i) {
      ASSERT_EQ(show(ma[i]), show(mb[i]));
      EXPECT_EQ(mb[i].seq, static_cast<Seq>(i + 1));
      if (!mb[i].client_msg_id.empty()) {
        auto fa = a.find_sent(mb[i].publisher_id, mb[i].client_msg_id);
        auto fb = b.find_sent(mb[i].publisher_id, mb[i].client_msg_id);
        ASSERT_TRUE(fa && fb && fa.value() && fb.value());
        EXPECT_EQ(fb.value()->conversation_id, id);
        EXPECT_EQ(fb.value()->seq, mb[i].seq);
        EXPECT_EQ(fb.value()->ts_ms, fa.value()->ts_ms);
      }
    }
    auto ba = a.messages_before(id, 60, 25), bb = b.messages_before(id, 60, 25);
    ASSERT_TRUE(ba && bb);
    EXPECT_EQ(shown(ba.value()), shown(bb.value()));
    ASSERT_TRUE(a.begin() && b.begin());
    auto la = a.lock_conversation(id), lb = b.lock_conversation(id);
    ASSERT_TRUE(la && lb);
    EXPECT_EQ(la->last_seq, lb->last_seq);
    EXPECT_EQ(la->members_version, lb->members_version);
    a.rollback();
    b.rollback();
  }
  for (auto& key : src.direct_keys) {
    auto da = a.find_direct(key), db = b.find_direct(key);
    ASSERT_TRUE(da && db && da.value() && db.value());
    EXPECT_EQ(*da.value(), *db.value());
  }
  for (auto& [user, device] : src.devices) {
    auto ca2 = a.cursors(user, device), cb2 = b.cursors(user, device);
    ASSERT_TRUE(ca2 && cb2);
    std::sort(ca2->begin(), ca2->end(), [](auto& x, auto& y) { return x.first < y.first; });
    std::sort(cb2->begin(), cb2->end(), [](auto& x, auto& y) { return x.first < y.first; });
    ASSERT_EQ(ca2->size(), cb2->size()) << user << "/" << device;
    for (std::size_t i = 0; i < ca2->size(); ++i) {
      EXPECT_EQ((*ca2)[i].first, (*cb2)[i].first);
      EXPECT_EQ((*ca2)[i].second.acked, (*cb2)[i].second.acked);
      EXPECT_EQ((*ca2)[i].second.fetched, (*cb2)[i].second.fetched);
    }
  }
  for (auto& id : src.requests) {
    auto ra = a.request_get(id), rb = b.request_get(id);
    ASSERT_TRUE(ra && rb && ra.value() && rb.value()) << id;
    EXPECT_EQ(show(*ra.value()), show(*rb.value()));
  }
  for (auto& u : src.users) {
    auto fa = a.list_friends(u), fb = b.list_friends(u);
    ASSERT_TRUE(fa && fb);
    EXPECT_EQ(shown(fa.value()), shown(fb.value())) << u;
    for (auto kind :
         {RequestKind::application, RequestKind::invitation, RequestKind::friend_request}) {
      auto qa = a.requests_of_user(kind, u, true, 1700000050000, 100);
      auto qb = b.requests_of_user(kind, u, true, 1700000050000, 100);
      ASSERT_TRUE(qa && qb);
      EXPECT_EQ(shown(qa.value()), shown(qb.value())) << u;
    }
  }
  {
    auto ra = a.rooms_list(0, 100), rb = b.rooms_list(0, 100);
    ASSERT_TRUE(ra && rb);
    EXPECT_EQ(shown(ra.value()), shown(rb.value()));
    for (auto id : src.rooms)
      for (auto& u : src.users)
        EXPECT_EQ(removed_from(a, id, u), removed_from(b, id, u)) << id << " " << u;
  }
  for (auto& f : src.files) {
    auto fa = a.get_file(f), fb = b.get_file(f);
    ASSERT_TRUE(fa && fb && fa.value() && fb.value());
    EXPECT_EQ(show(*fa.value()), show(*fb.value()));
    for (auto& u : src.users)
      EXPECT_EQ(a.file_accessible(f, u).value(), b.file_accessible(f, u).value()) << f << " " << u;
  }
}

// What fill() set of groups, requests and friends is there (not only the same on both sides).
void expect_groups(StoreSession& s, const Source& src) {
  EXPECT_EQ(s.find_user("carol").value()->user.direct_policy, DirectPolicy::friends);
  EXPECT_EQ(s.find_user("bob").value()->user.direct_policy, DirectPolicy::anyone);
  auto g = s.get_conversation(src.conversations[1]).value().value();
  for (auto& m : g.members)
    EXPECT_EQ(m.role, m.user_id == "bob"    ? Role::owner
                      : m.user_id == "dave" ? Role::admin
                                            : Role::member)
        << m.user_id;
  auto e = s.get_conversation(src.conversations[2]).value().value();
  EXPECT_EQ(e.join_policy, JoinPolicy::invite_only);
  EXPECT_EQ(e.notice, "rules:\n1. \"be kind\" \xe2\x9c\x93");
  EXPECT_EQ(g.join_policy, JoinPolicy::approval);
  auto m = s.messages_after(g.id, 0, 1000).value();
  EXPECT_EQ(std::count_if(m.begin(), m.end(),
                          [](const Message& x) { return x.type == MessageType::system; }),
            1);
  std::map<std::string, RequestStatus> want{
      {"rq-app-pending", RequestStatus::pending},     {"rq-app-approved", RequestStatus::approved},
      {"rq-app-cancelled", RequestStatus::cancelled}, {"rq-inv-declined", RequestStatus::declined},
      {"rq-inv-expired", RequestStatus::expired},     {"rq-fr-accepted", RequestStatus::accepted},
      {"rq-fr-pending", RequestStatus::pending}};
  for (auto& [id, status] : want) {
    auto r = s.request_get(id).value();
    ASSERT_TRUE(r) << id;
    EXPECT_EQ(r->status, status) << id;
  }
  EXPECT_EQ(s.request_get("rq-fr-accepted").value()->conversation_id, src.conversations[0]);
  EXPECT_TRUE(s.are_friends("alice", "bob").value());
  EXPECT_FALSE(s.are_friends("carol", "dave").value());
}

// What fill() set of rooms is there in a copy: the rooms and who is kept out of them, and no
// members (they were connections of the source's node).
void expect_rooms(StoreSession& s, const Source& src) {
  auto rooms = s.rooms_list(0, 100).value();
  ASSERT_EQ(rooms.size(), src.rooms.size());
  for (std::size_t i = 0; i < rooms.size(); ++i) {
    EXPECT_EQ(rooms[i].id, src.rooms[i]);
    EXPECT_EQ(rooms[i].member_count, 0) << rooms[i].id;
    EXPECT_TRUE(s.room_members(rooms[i].id).value().empty());
  }
  EXPECT_EQ(rooms[0].name, "voice \xf0\x9f\x8e\xa4 \"q\"");
  EXPECT_EQ(rooms[0].owner, "alice");
  EXPECT_EQ(rooms[0].max_members, 8);
  EXPECT_EQ(rooms[0].created_at_ms, 1700000060008);
  for (auto id : src.rooms)
    for (auto& u : src.users) {
      const bool want = std::find(src.room_bans.begin(), src.room_bans.end(), std::pair{id, u}) !=
                        src.room_bans.end();
      EXPECT_EQ(removed_from(s, id, u), want) << id << " " << u;
    }
}

// After the copy the target goes on where the source stopped: the next conversation gets a new
// id, the next message the next seq, a retried client_msg_id is still a retry.
void expect_continues(StoreSession& s, const Source& src) {
  Conversation c;
  c.name = "after";
  c.owner = "alice";
  c.members = {{"alice", false}};
  auto id = s.create_conversation(c, "");
  ASSERT_TRUE(id) << id.error().message;
  EXPECT_GT(id.value(), *std::max_element(src.conversations.begin(), src.conversations.end()));
  auto dup = s.create_conversation(c, "alice|bob");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::conflict);
  const ConversationId g = src.conversations[1];
  ASSERT_TRUE(s.begin());
  auto lock = s.lock_conversation(g);
  ASSERT_TRUE(lock);
  Message m;
  m.conversation_id = g;
  m.seq = lock->last_seq + 1;
  m.publisher_id = m.publisher_name = "bob";
  m.client_msg_id = "cm-0";  // bob's, sent into the direct conversation before the copy
  EXPECT_FALSE(s.insert_message(m, "").value());
  m.client_msg_id = "new";
  EXPECT_TRUE(s.insert_message(m, "").value());
  ASSERT_TRUE(s.set_last_seq(g, m.seq));
  ASSERT_TRUE(s.commit());
  auto after = s.get_conversation(g);
  EXPECT_EQ(after.value()->last_seq, lock->last_seq + 1);
  EXPECT_EQ(after.value()->members_version, lock->members_version);

  // The next room gets a new id; a copied room numbers its members from 1 again (none came
  // with it), and a removed user is still refused.
  auto room = s.room_create(Room{0, "after", "bob", 5, 1, 0});
  ASSERT_TRUE(room) << room.error().message;
  EXPECT_GT(room.value(), *std::max_element(src.rooms.begin(), src.rooms.end()));
  ASSERT_TRUE(s.begin());
  auto j = s.room_join(src.rooms[0], "bob", "node-2", 9, 2);
  ASSERT_TRUE(j) << j.error().message;
  EXPECT_TRUE(j->fresh);
  EXPECT_EQ(j->member.member_no, 1u);
  EXPECT_EQ(s.room_join(src.rooms[0], "carol", "node-2", 10, 2).error().code, Errc::forbidden);
  ASSERT_TRUE(s.commit());
}

class Migrate : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = pgtest::skip_reason(); !why.empty()) GTEST_SKIP() << why;
    auto db = pgtest::create_database();
    ASSERT_TRUE(db) << db.error().message;
    db_ = db.value();
    auto pg = open_postgres_store(PostgresOptions{db_.url});
    ASSERT_TRUE(pg) << pg.error().message;
    pg_ = std::move(pg.value());
    sqlite_ = sqlite_store(temp_dir("source"));
    ASSERT_TRUE(sqlite_);
  }
  void TearDown() override {
    pg_.reset();
    if (!db_.name.empty()) (void)pgtest::drop_database(db_.name);
  }

  pgtest::Database db_;
  std::unique_ptr<Store> pg_;
  std::unique_ptr<Store> sqlite_;
};

// The brief's case, with the default batches and with tiny ones (a table's COPY then carries
// hundreds of batches, and a conversation's members are split across batches).
void round_trip(Store& sqlite, Store& pg, const BatchLimits& limits) {
  auto src_s = session(sqlite), pg_s = session(pg);
  ASSERT_TRUE(src_s && pg_s);
  const Source src = fill(*src_s, 3000);
  CopyOptions opts;
  opts.batch = limits;
  int64_t batches = 0;
  opts.on_batch = [&](const StoreRows& b) {
    ++batches;
    EXPECT_LE(b.size(), std::max<std::size_t>(limits.max_rows, 1));
    return ok_status();
  };
  auto copied = copy_store(*src_s, *pg_s, opts);
  ASSERT_TRUE(copied) << copied.error().message;
  EXPECT_EQ(copied->users, 5);
  EXPECT_EQ(copied->tokens, 4);
  EXPECT_EQ(copied->conversations, 3);
  EXPECT_EQ(copied->members, 2 + 4 + 1);
  EXPECT_EQ(copied->files, 3);
  EXPECT_EQ(copied->messages, 3000);
  EXPECT_EQ(copied->cursors, 4);
  EXPECT_EQ(copied->requests, 7);
  EXPECT_EQ(copied->friends, 1);
  EXPECT_EQ(copied->rooms, 2);
  EXPECT_EQ(copied->room_bans, 3);
  EXPECT_GE(batches, 11);
  expect_same(*src_s, *pg_s, src);
  expect_groups(*pg_s, src);
  expect_rooms(*pg_s, src);

  // And back into a new SQLite store (the bulk calls are symmetric).
  auto back = sqlite_store(temp_dir("back"));
  ASSERT_TRUE(back);
  auto back_s = session(*back);
  auto again = copy_store(*pg_s, *back_s, opts);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again.value(), copied.value());
  expect_same(*src_s, *back_s, src);
  expect_groups(*back_s, src);
  expect_rooms(*back_s, src);

  expect_continues(*pg_s, src);
  expect_continues(*back_s, src);
}

TEST_F(Migrate, SqliteToPostgresAndBackKeepsEveryRow) {
  round_trip(*sqlite_, *pg_, BatchLimits{});
}

TEST_F(Migrate, TinyBatchesKeepEveryRow) {
  round_trip(*sqlite_, *pg_, BatchLimits{7, 600});
}

// A target with anything in it is refused, and the copy writes nothing to it.
TEST_F(Migrate, ANonEmptyTargetIsRefusedAndUntouched) {
  auto src_s = session(*sqlite_), pg_s = session(*pg_);
  fill(*src_s, 10);
  ASSERT_TRUE(pg_s->create_user(User{"zoe", "Zoe", false, 1}, "h"));
  auto r = copy_store(*src_s, *pg_s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::conflict);
  EXPECT_NE(r.error().message.find("not empty (1 users)"), std::string::npos) << r.error().message;
  auto counts = pg_s->count_rows();
  ASSERT_TRUE(counts);
  EXPECT_EQ(describe_counts(counts.value()), "1 users");
  EXPECT_FALSE(pg_s->find_user("alice").value());
}

// All or nothing: a copy that fails after most of the messages went in leaves no row behind,
// and the same copy then succeeds into the same database.
TEST_F(Migrate, AFailedCopyLeavesTheTargetEmpty) {
  auto src_s = session(*sqlite_), pg_s = session(*pg_);
  const Source src = fill(*src_s, 3000);
  CopyOptions opts;
  opts.batch.max_rows = 500;
  int64_t messages = 0;
  opts.on_batch = [&](const StoreRows& b) -> Status {
    messages += static_cast<int64_t>(b.messages.size());
    if (messages >= 2500) return make_error(Errc::internal, "stop here");
    return ok_status();
  };
  auto r = copy_store(*src_s, *pg_s, opts);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "stop here");
  EXPECT_EQ(pg_s->count_rows().value().total(), 0);
  opts.on_batch = nullptr;
  auto again = copy_store(*src_s, *pg_s, opts);
  ASSERT_TRUE(again) << again.error().message;
  expect_same(*src_s, *pg_s, src);
}

// Text PostgreSQL cannot hold (SQLite stores any bytes) is refused with the row named, before
// the server sees it, and nothing is written.
TEST_F(Migrate, TextPostgresCannotHoldIsRefusedByRow) {
  auto src_s = session(*sqlite_), pg_s = session(*pg_);
  fill(*src_s, 10);
  ASSERT_TRUE(src_s->create_user(User{"zed", std::string("bad\xff", 4), false, 1}, "h"));
  auto r = copy_store(*src_s, *pg_s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::bad_request);
  EXPECT_NE(r.error().message.find("users zed"), std::string::npos) << r.error().message;
  EXPECT_EQ(pg_s->count_rows().value().total(), 0);
}

// How fast a node's history moves: messages/s from SQLite into PostgreSQL (fsync off on the
// test server). CONVERGE_MIGRATE_MESSAGES sets how many (default 100,000).
TEST_F(Migrate, Throughput) {
  const char* env = std::getenv("CONVERGE_MIGRATE_MESSAGES");
  const int n = env ? std::atoi(env) : 100000;
  auto src_s = session(*sqlite_), pg_s = session(*pg_);
  fill(*src_s, n);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = copy_store(*src_s, *pg_s);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->messages, n);
  std::printf("[ migrate  ] %d messages SQLite -> PostgreSQL in %.2f s: %.0f messages/s\n", n, s,
              n / s);
  auto back = sqlite_store(temp_dir("back"));
  auto back_s = session(*back);
  const auto t1 = std::chrono::steady_clock::now();
  auto b = copy_store(*pg_s, *back_s);
  const double s2 = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  ASSERT_TRUE(b) << b.error().message;
  std::printf("[ migrate  ] %d messages PostgreSQL -> SQLite in %.2f s: %.0f messages/s\n", n, s2,
              n / s2);
}

}  // namespace
