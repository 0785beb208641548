// Groups on a real service and SQLite store: roles, system messages in seq order, the one
// decision of a request, and refusals that store nothing.
#include <boost/json/parse.hpp>
#include <thread>

#include "service/test_fixture.hpp"

namespace converge::testing {
namespace {

class Groups : public ServiceFixture {
 protected:
  void tune(ServiceOptions& o) override { o.max_group_members = 4; }

  std::vector<Message> all(const AuthContext& who, ConversationId id) {
    auto h = svc_->history(who, id, 0, 0, 100);
    EXPECT_TRUE(h) << (h ? "" : h.error().message);
    return h ? h.value() : std::vector<Message>{};
  }
  static std::string event_of(const Message& m) {
    auto v = boost::json::parse(m.body);
    return std::string(v.as_object().at("event").as_string());
  }
  static Role role_of(const Conversation& c, const std::string& u) {
    if (u == c.owner) return Role::owner;
    for (auto& m : c.members)
      if (m.user_id == u) return m.role;
    ADD_FAILURE() << u << " is not a member";
    return Role::member;
  }
};

TEST_F(Groups, ChangesAreSystemMessagesWithTheirOwnSeqs) {
  auto alice = user("alice"), bob = user("bob"), carol = user("carol");
  auto g = group(alice, {"bob"});
  ASSERT_TRUE(send(alice, g, "hi"));
  auto c = svc_->add_members(alice, g, {"carol"});
  ASSERT_TRUE(c) << c.error().message;
  auto u = svc_->update_group(alice, g, {std::string("team"), std::nullopt, JoinPolicy::open});
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->name, "team");
  EXPECT_EQ(u->join_policy, JoinPolicy::open);
  auto r = svc_->set_role(alice, g, "bob", Role::admin);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(role_of(r.value(), "bob"), Role::admin);
  auto m = all(carol, g);
  ASSERT_EQ(m.size(), 4u);
  for (std::size_t i = 0; i < m.size(); ++i) EXPECT_EQ(m[i].seq, static_cast<Seq>(i + 1));
  EXPECT_EQ(m[0].type, MessageType::text);
  EXPECT_EQ(m[1].type, MessageType::system);
  EXPECT_EQ(event_of(m[1]), "member_added");
  EXPECT_EQ(event_of(m[2]), "updated");
  EXPECT_EQ(event_of(m[3]), "role_changed");
  // The same values again: nothing stored.
  ASSERT_TRUE(svc_->update_group(alice, g, {std::string("team"), std::nullopt, std::nullopt}));
  ASSERT_TRUE(svc_->set_role(alice, g, "bob", Role::admin));
  EXPECT_EQ(all(carol, g).size(), 4u);
  (void)bob;
}

TEST_F(Groups, RolesDecideWhoMayDoWhat) {
  auto alice = user("alice"), bob = user("bob"), carol = user("carol"), dave = user("dave");
  auto g = group(alice, {"bob", "carol", "dave"});
  ASSERT_TRUE(svc_->set_role(alice, g, "bob", Role::admin));
  const auto before = all(alice, g).size();
  // A member changes nothing, an admin gives no roles, nobody makes a second owner.
  EXPECT_EQ(svc_->update_group(carol, g, {std::string("x"), {}, {}}).error().code, Errc::forbidden);
  EXPECT_EQ(svc_->set_role(bob, g, "carol", Role::admin).error().code, Errc::forbidden);
  EXPECT_EQ(svc_->set_role(alice, g, "carol", Role::owner).error().code, Errc::bad_request);
  EXPECT_EQ(svc_->remove_member(bob, g, "alice").error().code, Errc::forbidden);
  EXPECT_EQ(svc_->remove_member(carol, g, "dave").error().code, Errc::forbidden);
  EXPECT_EQ(all(alice, g).size(), before);
  // An admin removes a member; the owner hands over and becomes an admin.
  ASSERT_TRUE(svc_->remove_member(bob, g, "dave"));
  auto t = svc_->transfer_owner(alice, g, "carol");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->owner, "carol");
  EXPECT_EQ(role_of(t.value(), "alice"), Role::admin);
  // The owner leaves: the earliest admin takes over.
  auto left = svc_->remove_member(carol, g, "carol");
  ASSERT_TRUE(left) << left.error().message;
  EXPECT_EQ(left->owner, "alice");
  auto m = all(alice, g);
  EXPECT_EQ(event_of(m.back()), "owner_changed");
  EXPECT_EQ(event_of(m[m.size() - 2]), "member_left");
  (void)dave;
}

TEST_F(Groups, AnApplicationIsDecidedOnce) {
  auto alice = user("alice"), bob = user("bob"), erin = user("erin");
  auto g = group(alice, {"bob"});
  ASSERT_TRUE(svc_->set_role(alice, g, "bob", Role::admin));
  auto a = svc_->apply(erin, g, "let me in");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_TRUE(a->created);
  EXPECT_EQ(a->request.status, RequestStatus::pending);
  // Asking again answers the pending one.
  auto again = svc_->apply(erin, g, "");
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->request.id, a->request.id);
  // The applicant does not decide their own.
  EXPECT_EQ(svc_->decide(erin, RequestKind::application, a->request.id, true).error().code,
            Errc::forbidden);
  auto yes = svc_->decide(bob, RequestKind::application, a->request.id, true);
  ASSERT_TRUE(yes) << yes.error().message;
  EXPECT_EQ(yes->request.status, RequestStatus::approved);
  const auto n = all(alice, g).size();
  auto no = svc_->decide(alice, RequestKind::application, a->request.id, false);
  ASSERT_TRUE(no) << no.error().message;
  EXPECT_EQ(no->request.status, RequestStatus::approved);  // the first decision's result
  EXPECT_EQ(no->request.decided_by, "bob");
  EXPECT_EQ(all(alice, g).size(), n);
  EXPECT_EQ(svc_->apply(erin, g, "").error().code, Errc::conflict);  // a member now
  // Another kind's endpoint does not know it.
  EXPECT_EQ(svc_->decide(erin, RequestKind::invitation, a->request.id, true).error().code,
            Errc::not_found);
}

TEST_F(Groups, TheMemberLimitHoldsForEveryWayIn) {
  auto alice = user("alice");
  for (auto id : {"bob", "carol", "dave", "erin", "frank"}) user(id);
  auto g = group(alice, {"bob", "carol", "dave"});  // 4 = max_group_members
  const auto before = all(alice, g).size();
  EXPECT_EQ(svc_->add_members(alice, g, {"erin"}).error().code, Errc::forbidden);
  auto erin = user("erin");
  auto inv = svc_->invite(alice, g, "erin", "");
  ASSERT_TRUE(inv) << inv.error().message;
  EXPECT_EQ(svc_->decide(erin, RequestKind::invitation, inv->request.id, true).error().code,
            Errc::forbidden);
  EXPECT_EQ(all(alice, g).size(), before);
  // Still pending: once a member leaves it can be accepted.
  ASSERT_TRUE(svc_->remove_member(alice, g, "dave"));
  auto ok = svc_->decide(erin, RequestKind::invitation, inv->request.id, true);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->request.status, RequestStatus::accepted);
}

TEST_F(Groups, FriendsAndDirectPolicy) {
  auto alice = user("alice"), bob = user("bob"), carol = user("carol");
  ASSERT_TRUE(svc_->set_direct_policy(bob, DirectPolicy::friends));
  CreateConversationRequest d;
  d.type = ConversationType::direct;
  d.members = {"bob"};
  EXPECT_EQ(svc_->create_conversation(alice, d).error().code, Errc::forbidden);
  auto fr = svc_->request_friend(alice, "bob", "hi");
  ASSERT_TRUE(fr) << fr.error().message;
  // bob asking back is a yes, with the pair's conversation.
  auto back = svc_->request_friend(bob, "alice", "");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->request.status, RequestStatus::accepted);
  ASSERT_TRUE(back->conversation);
  EXPECT_EQ(back->conversation->type, ConversationType::direct);
  EXPECT_TRUE(svc_->create_conversation(alice, d));
  auto fs = svc_->list_friends(alice);
  ASSERT_TRUE(fs);
  ASSERT_EQ(fs->size(), 1u);
  EXPECT_EQ(fs->front().user_id, "bob");
  EXPECT_EQ(svc_->request_friend(alice, "bob", "").error().code, Errc::conflict);
  EXPECT_EQ(svc_->request_friend(carol, "carol", "").error().code, Errc::bad_request);
}

class ShortRequests : public Groups {
 protected:
  void tune(ServiceOptions& o) override { o.request_ttl_ms = 1; }
};

TEST_F(ShortRequests, AnExpiredRequestCannotBeDecided) {
  auto alice = user("alice"), bob = user("bob");
  auto fr = svc_->request_friend(alice, "bob", "");
  ASSERT_TRUE(fr);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(svc_->decide(bob, RequestKind::friend_request, fr->request.id, true).error().code,
            Errc::conflict);
  auto list = svc_->list_friend_requests(bob);
  ASSERT_TRUE(list);
  EXPECT_TRUE(list->empty());
  auto fs = svc_->list_friends(bob);
  ASSERT_TRUE(fs);
  EXPECT_TRUE(fs->empty());
}

}  // namespace
}  // namespace converge::testing
