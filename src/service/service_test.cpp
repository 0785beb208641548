#include <gtest/gtest.h>

#include "service/test_fixture.hpp"

using namespace converge;
using converge::testing::ServiceFixture;

namespace {

class Accounts : public ServiceFixture {};

TEST_F(Accounts, RegisterLoginAuthenticate) {
  auto u = svc_->register_user("alice", "Alice", "secret", false, false);
  ASSERT_TRUE(u);
  EXPECT_EQ(svc_->register_user("alice", "", "x", false, false).error().code, Errc::conflict);
  EXPECT_EQ(svc_->register_user("bad/id", "", "x", false, false).error().code, Errc::bad_request);
  EXPECT_EQ(svc_->login("alice", "wrong", "d").error().code, Errc::unauthorized);
  EXPECT_EQ(svc_->login("nobody", "secret", "d").error().code, Errc::unauthorized);
  auto l = svc_->login("alice", "secret", "phone");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->token.size(), 64u);
  auto a = svc_->authenticate(l->token);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->user_id, "alice");
  EXPECT_EQ(a->user_name, "Alice");
  EXPECT_EQ(a->device_id, "phone");
  EXPECT_EQ(svc_->authenticate("deadbeef").error().code, Errc::unauthorized);
  ASSERT_TRUE(svc_->logout(a.value()));
  EXPECT_EQ(svc_->authenticate(l->token).error().code, Errc::unauthorized);
}

TEST_F(Accounts, GeneratesAnIdWhenNoneIsGiven) {
  auto u = svc_->register_user("", "Zed", "pw", false, false);
  ASSERT_TRUE(u);
  EXPECT_TRUE(valid_user_id(u->id));
  EXPECT_EQ(u->name, "Zed");
}

TEST_F(Accounts, UserIdsAreCaseFoldedAndNamesChecked) {
  auto u = svc_->register_user("ALICE", "", "pw", false, false);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->id, "alice");
  EXPECT_EQ(svc_->register_user("Alice", "", "pw", false, false).error().code, Errc::conflict);
  auto l = svc_->login("aLiCe", "pw", "d");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->auth.user_id, "alice");
  EXPECT_TRUE(svc_->find_user("ALICE"));
  for (const char* bad : {".", "..", "...", "-x", "_x", "all", "ALL", "a/b"})
    EXPECT_EQ(svc_->register_user(bad, "", "pw", false, false).error().code, Errc::bad_request)
        << bad;
  for (const char* name :
       {"a\x01b", "evil\xE2\x80\xAEtxt", "x\xC2\x85", "nul\x7f", "iso\xE2\x81\xA6"})
    EXPECT_EQ(svc_->register_user("", name, "pw", false, false).error().code, Errc::bad_request)
        << name;
  EXPECT_TRUE(svc_->register_user("", "Zo\xC3\xAB \xE2\x80\x8F", "pw", false, false))
      << "letters and marks are names";
}

class Throttled : public ServiceFixture {
 protected:
  void tune(ServiceOptions& o) override {
    o.rate_login_user = parse_rate("3/60").value();
    o.rate_login_address = parse_rate("5/60").value();
    o.rate_register_address = parse_rate("2/60").value();
    o.rate_conversations_user = parse_rate("2/60").value();
    o.rate_members_user = parse_rate("4/60").value();
    o.max_groups_per_user = 2;
  }
};

TEST_F(Throttled, FailedLoginsPerUserThenPerAddress) {
  ASSERT_TRUE(svc_->register_user("alice", "", "pw", true, false));
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(svc_->login("alice", "bad", "d", "10.0.0.1").error().code, Errc::unauthorized);
  auto r = svc_->login("alice", "pw", "d", "10.0.0.2");  // right password, other address
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::rate_limited);
  EXPECT_GE(r.error().retry_after_s, 1);
  // Unknown ids: throttled the same way, and by address across ids.
  EXPECT_EQ(svc_->login("nobody1", "x", "d", "10.0.0.1").error().code, Errc::unauthorized);
  EXPECT_EQ(svc_->login("nobody2", "x", "d", "10.0.0.1").error().code, Errc::unauthorized);
  EXPECT_EQ(svc_->login("nobody3", "x", "d", "10.0.0.1").error().code, Errc::rate_limited);
  ASSERT_TRUE(svc_->register_user("bob", "", "pw", true, false));
  EXPECT_TRUE(svc_->login("bob", "pw", "d", "10.0.0.3")) << "others are not affected";
}

TEST_F(Throttled, RegistrationsAndConversationsAndGroupCap) {
  EXPECT_TRUE(svc_->register_user("a1", "", "pw", false, false, "10.1.1.1"));
  EXPECT_TRUE(svc_->register_user("a2", "", "pw", false, false, "10.1.1.1"));
  EXPECT_EQ(svc_->register_user("a3", "", "pw", false, false, "10.1.1.1").error().code,
            Errc::rate_limited);
  EXPECT_FALSE(svc_->find_user("a3")) << "nothing created";
  EXPECT_TRUE(svc_->register_user("a3", "", "pw", true, false, "10.1.1.1")) << "admins exempt";
  auto a = svc_->login("a1", "pw", "d").value().auth;
  CreateConversationRequest g{ConversationType::group, {"a2"}, "g"};
  EXPECT_TRUE(svc_->create_conversation(a, g));
  EXPECT_TRUE(svc_->create_conversation(a, g));
  auto third = svc_->create_conversation(a, g);
  EXPECT_EQ(third.error().code, Errc::rate_limited);
  EXPECT_EQ(svc_->list_conversations(a).value().size(), 2u);
  // a3 creates a group with a2, who is in two already: the cap refuses it.
  auto c = svc_->login("a3", "pw", "d").value().auth;
  auto capped = svc_->create_conversation(c, g);
  ASSERT_FALSE(capped);
  EXPECT_EQ(capped.error().code, Errc::forbidden);
  EXPECT_NE(capped.error().message.find("a2"), std::string::npos);
  EXPECT_EQ(svc_->list_conversations(c).value().size(), 0u);
}

TEST_F(Accounts, LogoutAllAndPasswordChangeRevokeTokens) {
  user("alice", "d1");
  auto t1 = svc_->login("alice", "pw", "d1").value();
  auto t2 = svc_->login("alice", "pw", "d2").value();
  EXPECT_EQ(svc_->change_password(t1.auth, "wrong", "new", "").error().code, Errc::unauthorized);
  auto n = svc_->change_password(t1.auth, "pw", "new", "");
  ASSERT_TRUE(n);
  EXPECT_GE(n.value(), 2);  // t2 and the fixture's token
  EXPECT_TRUE(svc_->authenticate(t1.token)) << "the caller's token survives";
  EXPECT_FALSE(svc_->authenticate(t2.token));
  EXPECT_FALSE(svc_->login("alice", "pw", "d"));
  auto t3 = svc_->login("alice", "new", "d3").value();
  auto all = svc_->logout_all(t3.auth);
  ASSERT_TRUE(all);
  EXPECT_EQ(all.value(), 2);
  EXPECT_FALSE(svc_->authenticate(t1.token));
  EXPECT_FALSE(svc_->authenticate(t3.token));
}

class ClosedRegistration : public ServiceFixture {
 protected:
  void SetUp() override {
    open_registration_ = false;
    ServiceFixture::SetUp();
  }
};

TEST_F(ClosedRegistration, OnlyAdminsAddUsers) {
  EXPECT_EQ(svc_->register_user("alice", "", "pw", false, false).error().code, Errc::forbidden);
  EXPECT_TRUE(svc_->register_user("alice", "", "pw", true, false));
  ASSERT_TRUE(svc_->ensure_admin("root", "pw"));
  auto l = svc_->login("root", "pw", "d");
  ASSERT_TRUE(l);
  EXPECT_TRUE(l->auth.is_admin);
}

class Conversations : public ServiceFixture {};

TEST_F(Conversations, DirectIsIdempotentPerPair) {
  auto a = user("alice"), b = user("bob");
  CreateConversationRequest r{ConversationType::direct, {"bob"}, ""};
  auto c1 = svc_->create_conversation(a, r);
  ASSERT_TRUE(c1);
  EXPECT_TRUE(c1->second);
  CreateConversationRequest back{ConversationType::direct, {"alice"}, ""};
  auto c2 = svc_->create_conversation(b, back);
  ASSERT_TRUE(c2);
  EXPECT_FALSE(c2->second);
  EXPECT_EQ(c1->first.id, c2->first.id);
  CreateConversationRequest three{ConversationType::direct, {"bob", "carol"}, ""};
  user("carol");
  EXPECT_EQ(svc_->create_conversation(a, three).error().code, Errc::bad_request);
}

TEST_F(Conversations, GroupsNeedRealMembers) {
  auto a = user("alice");
  CreateConversationRequest alone{ConversationType::group, {}, "solo"};
  EXPECT_EQ(svc_->create_conversation(a, alone).error().code, Errc::bad_request);
  CreateConversationRequest ghost{ConversationType::group, {"ghost"}, "g"};
  EXPECT_EQ(svc_->create_conversation(a, ghost).error().code, Errc::not_found);
  EXPECT_TRUE(svc_->list_conversations(a)->empty());
}

TEST_F(Conversations, OnlyMembersReadAndOnlyTheOwnerRemovesOthers) {
  auto a = user("alice"), b = user("bob"), c = user("carol");
  auto g = group(a, {"bob"});
  EXPECT_EQ(svc_->history(c, g, 0, 0, 10).error().code, Errc::forbidden);
  EXPECT_EQ(svc_->add_members(c, g, {"carol"}).error().code, Errc::forbidden);
  ASSERT_TRUE(svc_->add_members(b, g, {"carol"}));
  EXPECT_TRUE(svc_->history(c, g, 0, 0, 10));
  EXPECT_EQ(svc_->remove_member(b, g, "carol").error().code, Errc::forbidden);
  ASSERT_TRUE(svc_->remove_member(c, g, "carol"));  // leaving is always allowed
  ASSERT_TRUE(svc_->add_members(a, g, {"carol"}));
  ASSERT_TRUE(svc_->remove_member(a, g, "carol"));  // the owner removes
  EXPECT_EQ(svc_->history(c, g, 0, 0, 10).error().code, Errc::forbidden);
}

TEST_F(Conversations, AnOwnerWhoLeavesHandsTheGroupOn) {
  auto a = user("alice"), b = user("bob");
  user("carol");
  auto g = group(a, {"bob", "carol"});
  auto left = svc_->remove_member(a, g, "alice");
  ASSERT_TRUE(left);
  EXPECT_NE(left->owner, "alice");
  auto now = svc_->get_conversation(b, g);
  ASSERT_TRUE(now);
  EXPECT_EQ(now->owner, left->owner);
  // The new owner may now remove others.
  auto heir = left->owner == "bob" ? b : user("carol");
  auto other = left->owner == "bob" ? std::string("carol") : std::string("bob");
  EXPECT_TRUE(svc_->remove_member(heir, g, other));
}

class Messaging : public ServiceFixture {};

TEST_F(Messaging, SeqIsGaplessAndRetriesAreStoredOnce) {
  auto a = user("alice"), b = user("bob");
  auto g = group(a, {"bob"});
  auto s1 = send(a, g, "one", "c1");
  ASSERT_TRUE(s1);
  EXPECT_EQ(s1->seq, 1);
  auto retry = send(a, g, "one", "c1");
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->seq, 1);
  EXPECT_TRUE(retry->duplicate);
  auto s2 = send(b, g, "two", "c1");  // client_msg_id is per publisher
  ASSERT_TRUE(s2);
  EXPECT_EQ(s2->seq, 2);
  auto h = svc_->history(a, g, 0, 0, 10);
  ASSERT_TRUE(h);
  ASSERT_EQ(h->size(), 2u);
  EXPECT_EQ((*h)[0].publisher_id, "alice");
  EXPECT_EQ((*h)[1].seq, 2);
}

// Sends queued together go to the store together (one insert for many on SQLite): a retry
// and a repeat among them take no seq, the messages after them in the conversation close up,
// and every ack says where its message is.
TEST_F(Messaging, RetriesInsideABatchLeaveNoGap) {
  auto a = user("alice"), b = user("bob");
  auto g = group(a, {"bob"});
  auto h = group(a, {"bob"});
  ASSERT_EQ(send(a, g, "zero", "c0")->seq, 1);
  constexpr int kSends = 120;
  std::vector<std::promise<Result<SendAck>>> ps(kSends);
  std::vector<std::string> cmids(kSends);
  for (int i = 0; i < kSends; ++i) {
    cmids[i] = i == 30 ? "c0" : i == 77 ? cmids[70] : "n" + std::to_string(i);
    SendRequest r;
    r.conversation_id = i % 3 == 2 ? h : g;
    r.body = "m" + std::to_string(i);
    r.client_msg_id = cmids[i];
    svc_->send(i % 2 && i != 30 && i != 77 ? b : a, r,
               [&p = ps[i]](Result<SendAck> x) { p.set_value(std::move(x)); });
  }
  std::vector<SendAck> acks;
  for (auto& p : ps) {
    auto r = p.get_future().get();
    ASSERT_TRUE(r) << r.error().message;
    acks.push_back(*r);
  }
  EXPECT_TRUE(acks[30].duplicate);
  EXPECT_EQ(acks[30].conversation_id, g);
  EXPECT_EQ(acks[30].seq, 1);
  EXPECT_TRUE(acks[77].duplicate) << "alice's n70 again";
  EXPECT_EQ(acks[77].seq, acks[70].seq);
  EXPECT_EQ(acks[77].conversation_id, acks[70].conversation_id);
  auto all_of = [&](ConversationId c) {  // history pages hold 50 at most
    std::vector<Message> out;
    for (;;) {
      auto page = svc_->history(a, c, out.empty() ? 0 : out.back().seq, 0, 50);
      if (!page || page->empty()) return out;
      out.insert(out.end(), page->begin(), page->end());
    }
  };
  std::size_t stored = 0;
  for (ConversationId c : {g, h}) {
    auto hist = std::optional<std::vector<Message>>(all_of(c));
    stored += hist->size();
    for (std::size_t k = 0; k < hist->size(); ++k)
      EXPECT_EQ((*hist)[k].seq, static_cast<Seq>(k + 1)) << "gapless";
    for (int i = 0; i < kSends; ++i) {
      if (acks[i].duplicate || acks[i].conversation_id != c) continue;
      ASSERT_LE(acks[i].seq, static_cast<Seq>(hist->size()));
      EXPECT_EQ((*hist)[static_cast<std::size_t>(acks[i].seq - 1)].body, "m" + std::to_string(i))
          << "ack " << i << " names its message";
    }
  }
  EXPECT_EQ(stored, static_cast<std::size_t>(1 + kSends - 2));
}

TEST_F(Messaging, RejectionsStoreNothing) {
  auto a = user("alice"), b = user("bob"), c = user("carol");
  auto g = group(a, {"bob"});
  EXPECT_EQ(send(c, g, "x").error().code, Errc::forbidden);
  EXPECT_EQ(send(a, g + 100, "x").error().code, Errc::not_found);
  SendRequest img;
  img.conversation_id = g;
  img.type = MessageType::image;
  img.file_id = "nope";
  std::promise<Result<SendAck>> p;
  svc_->send(a, img, [&p](Result<SendAck> r) { p.set_value(std::move(r)); });
  EXPECT_EQ(p.get_future().get().error().code, Errc::not_found);
  EXPECT_TRUE(svc_->history(a, g, 0, 0, 10)->empty());
  EXPECT_EQ(send(a, g, "ok")->seq, 1);  // no seq was burnt
}

TEST_F(Messaging, FilesAreSharedOnlyWhereSent) {
  auto a = user("alice"), b = user("bob"), c = user("carol");
  auto g = group(a, {"bob"});
  auto f = svc_->store_file(a, "../../etc/cat.png", "image/png", "PNGDATA");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->name, "cat.png");
  EXPECT_EQ(svc_->open_file(b, f->id).error().code, Errc::forbidden);
  SendRequest r;
  r.conversation_id = g;
  r.type = MessageType::image;
  r.file_id = f->id;
  std::promise<Result<SendAck>> p;
  svc_->send(a, r, [&p](Result<SendAck> x) { p.set_value(std::move(x)); });
  ASSERT_TRUE(p.get_future().get());
  auto opened = svc_->open_file(b, f->id);
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->meta.mime, "image/png");
  EXPECT_EQ(std::filesystem::file_size(opened->path), 7u);
  EXPECT_EQ(svc_->open_file(c, f->id).error().code, Errc::forbidden);
  EXPECT_EQ(svc_->open_file(a, "nope").error().code, Errc::not_found);
  EXPECT_EQ(svc_->store_file(a, "x", "not a mime", "d").error().code, Errc::bad_request);
}

TEST_F(Messaging, SyncPagesAfterTheHeartbeatCursor) {
  auto a = user("alice"), b = user("bob", "tablet");
  auto g1 = group(a, {"bob"});
  auto g2 = group(a, {"bob"});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(send(a, g1, "x"));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(send(a, g2, "y"));
  SyncRequest req;
  req.limit = 4;
  auto p1 = svc_->sync(b, req);
  ASSERT_TRUE(p1);
  ASSERT_EQ(p1->messages.size(), 4u);
  EXPECT_TRUE(p1->more);
  req.cursor = p1->next_cursor;
  auto p2 = svc_->sync(b, req);
  ASSERT_TRUE(p2);
  ASSERT_EQ(p2->messages.size(), 2u);
  EXPECT_FALSE(p2->more);
  EXPECT_EQ(p2->messages.back().conversation_id, g2);
  EXPECT_EQ(p2->messages.back().seq, 3);

  ASSERT_TRUE(svc_->heartbeat(b, {{g1, 3}, {g2, 99}}));  // 99 is clamped to the last seq
  auto empty = svc_->sync(b, SyncRequest{});
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->messages.empty());
  ASSERT_TRUE(send(a, g2, "z"));
  auto later = svc_->sync(b, SyncRequest{});
  ASSERT_EQ(later->messages.size(), 1u);
  EXPECT_EQ(later->messages[0].seq, 4);
  // Another device of bob has its own cursor.
  auto b2 = user("bob", "phone");
  EXPECT_EQ(svc_->sync(b2, SyncRequest{})->messages.size(), 7u);
}

TEST_F(Messaging, HeartbeatForAForeignConversationStoresNothing) {
  auto a = user("alice"), b = user("bob"), c = user("carol");
  auto g = group(a, {"bob"});
  auto mine = group(c, {"bob"});
  ASSERT_TRUE(send(a, g, "x"));
  EXPECT_EQ(svc_->heartbeat(c, {{g, 1}, {mine, 0}}).error().code, Errc::forbidden);
  EXPECT_TRUE(svc_->stream_positions(c)->empty());
  EXPECT_EQ(svc_->sync(c, SyncRequest{})->messages.size(), 0u);
}

// A device attached to the hub receives what is stored, once per message.
class Sink : public DeviceSink {
 public:
  explicit Sink(std::string uid) : uid_(std::move(uid)) {}
  const std::string& sink_user_id() const override { return uid_; }
  void deliver(const std::shared_ptr<const Delivery>& d) override { got.push_back(d->msg.seq); }
  void notify(const std::shared_ptr<const Notice>& n) override {
    notices.push_back(n->payload_json);
  }
  std::vector<Seq> got;
  std::vector<std::string> notices;

 private:
  std::string uid_;
};

TEST_F(Messaging, FanOutReachesEveryMemberDeviceOnly) {
  auto a = user("alice"), b = user("bob");
  user("carol");
  auto g = group(a, {"bob"});
  Sink bob1("bob"), bob2("bob"), carol("carol"), alice("alice");
  for (auto* s : {&bob1, &bob2, &carol, &alice}) hub_.attach(shard_, s);
  ASSERT_TRUE(send(a, g, "1"));
  ASSERT_TRUE(send(b, g, "2"));
  ASSERT_TRUE(loop_.run_until([&] { return bob2.got.size() == 2 && alice.got.size() == 2; }));
  EXPECT_EQ(bob1.got, (std::vector<Seq>{1, 2}));
  EXPECT_TRUE(carol.got.empty());
  ASSERT_TRUE(svc_->ensure_admin("root", "pw"));
  auto root = svc_->login("root", "pw", "d")->auth;
  ASSERT_TRUE(svc_->send_event(root, "carol", R"({"k":1})"));
  EXPECT_EQ(svc_->send_event(a, "carol", "{}").error().code, Errc::forbidden);
  EXPECT_EQ(svc_->send_event(root, "ghost", "{}").error().code, Errc::not_found);
  ASSERT_TRUE(svc_->broadcast(root, R"({"all":true})"));
  ASSERT_TRUE(
      loop_.run_until([&] { return carol.notices.size() == 2 && bob1.notices.size() == 1; }));
  EXPECT_EQ(carol.notices[0], R"({"k":1})");
  for (auto* s : {&bob1, &bob2, &carol, &alice}) hub_.detach(shard_, s);
  EXPECT_EQ(hub_.sinks(), 0);
}

}  // namespace
