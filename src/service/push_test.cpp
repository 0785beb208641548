// Offline push (service/push.hpp): the pure parts, and the worker on a real service with a
// webhook stand-in that answers as told.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "base/crypto.hpp"
#include "service/push.hpp"
#include "service/test_fixture.hpp"

using namespace converge;
using converge::testing::ServiceFixture;

namespace {

namespace json = boost::json;

TEST(PushPreview, CutsOnCharactersAndBlanksControls) {
  EXPECT_EQ(push_preview("hello", 100), "hello");
  EXPECT_EQ(push_preview("hello", 3), "hel");
  // é is two bytes, 😀 four: counted as one character each, never split.
  EXPECT_EQ(push_preview("caf\xc3\xa9 \xf0\x9f\x98\x80!", 6), "caf\xc3\xa9 \xf0\x9f\x98\x80");
  EXPECT_EQ(push_preview("caf\xc3\xa9", 4), "caf\xc3\xa9");
  EXPECT_EQ(push_preview("a\nb\tc\x7f"
                         "d\xc2\x85"
                         "e",
                         100),
            "a b c d e");
  // A right-to-left override would turn "txt.exe" around on a phone's screen.
  EXPECT_EQ(push_preview("x\xe2\x80\xaeyz\xe2\x81\xa6w", 100), "x yz w");
  EXPECT_EQ(push_preview("bad \xff byte", 100), "bad \xef\xbf\xbd byte");
  EXPECT_EQ(push_preview("", 100), "");
  EXPECT_EQ(push_preview("abc", 0), "");
}

TEST(PushPayload, IsOneJsonObjectWhateverTheBodySays) {
  Message m;
  m.conversation_id = 12;
  m.seq = 3;
  m.publisher_id = "alice";
  m.publisher_name = "Al\"ice\\";
  m.body = std::string(R"(","mentioned":true,"x":")") + std::string(200, 'z');
  m.ts_ms = 99;
  auto p = push_payload(m, "bob", false, 100);
  auto o = json::parse(p).as_object();
  EXPECT_EQ(o.size(), 9u);
  EXPECT_EQ(o.at("user_id").as_string(), "bob");
  EXPECT_EQ(o.at("conversation_id").as_string(), "12");
  EXPECT_EQ(o.at("seq").as_int64(), 3);
  EXPECT_EQ(o.at("publisher_name").as_string(), "Al\"ice\\");
  EXPECT_EQ(o.at("type").as_string(), "text");
  EXPECT_EQ(o.at("mentioned").as_bool(), false);
  EXPECT_EQ(o.at("preview").as_string().size(), 100u);
  EXPECT_EQ(o.at("ts").as_int64(), 99);
  const std::string payloads[] = {p, p};
  auto body = json::parse(push_body(payloads)).as_object();
  EXPECT_EQ(body.at("pushes").as_array().size(), 2u);
  EXPECT_EQ(json::parse(push_body({})).as_object().at("pushes").as_array().size(), 0u);
  EXPECT_EQ(push_signature("k", "b"), "sha256=" + hmac_sha256_hex("k", "b"));
}

TEST(PushBackoff, DoublesUpToTheCapWithJitter) {
  PushOptions o;
  o.retry_base_ms = 1000;
  o.retry_cap_ms = 5000;
  EXPECT_EQ(push_backoff_ms(1, o, 1.0), 1000);
  EXPECT_EQ(push_backoff_ms(1, o, 0.0), 500);
  EXPECT_EQ(push_backoff_ms(2, o, 1.0), 2000);
  EXPECT_EQ(push_backoff_ms(3, o, 1.0), 4000);
  EXPECT_EQ(push_backoff_ms(4, o, 1.0), 5000);
  EXPECT_EQ(push_backoff_ms(60, o, 1.0), 5000);  // no overflow
  for (double j : {0.0, 0.3, 0.99}) {
    auto w = push_backoff_ms(3, o, j);
    EXPECT_GE(w, 2000);
    EXPECT_LE(w, 4000);
  }
}

// The webhook stand-in: records every POST, answers with the next scripted status (200 once the
// script is used up).
struct FakeWebhook {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<std::string, std::string>> posts;  // body, signature
  std::deque<int> script;

  PushResponse post(const std::string& body, const std::string& sig) {
    std::lock_guard lk(mu);
    posts.emplace_back(body, sig);
    cv.notify_all();
    int status = 200;
    if (!script.empty()) {
      status = script.front();
      script.pop_front();
    }
    if (status == 0) return PushResponse{0, "timeout"};
    return PushResponse{status, ""};
  }
  // Waits for `n` POSTs in all; their pushes, each POST's in order.
  std::vector<json::object> wait(std::size_t n) {
    std::unique_lock lk(mu);
    cv.wait_for(lk, std::chrono::seconds(5), [&] { return posts.size() >= n; });
    std::vector<json::object> out;
    for (auto& [body, _] : posts) {
      const json::value doc = json::parse(body);  // outlives the loop over its array
      for (auto& p : doc.as_object().at("pushes").as_array()) out.push_back(p.as_object());
    }
    return out;
  }
  // Waits until the POSTs carried `n` pushes in all; all of them.
  std::vector<json::object> wait_pushes(std::size_t n) {
    for (std::size_t posts_seen = 0;;) {
      auto got = wait(posts_seen + 1);
      if (got.size() >= n || count() == posts_seen) return got;
      posts_seen = count();
    }
  }
  std::size_t count() {
    std::lock_guard lk(mu);
    return posts.size();
  }
};

class Push : public ServiceFixture {
 protected:
  void tune(ServiceOptions& o) override {
    o.push.post = [this](const std::string& b, const std::string& s) { return hook_.post(b, s); };
    o.push.secret = "0123456789abcdef";
    o.push.retry_max = 3;
    o.push.retry_base_ms = 10;
    o.push.retry_cap_ms = 20;
    o.push.batch_ms = 5;
  }
  Result<SendAck> send_mentions(const AuthContext& who, ConversationId c,
                                std::vector<std::string> mentions) {
    SendRequest r;
    r.conversation_id = c;
    r.body = "hey";
    r.mentions = std::move(mentions);
    std::promise<Result<SendAck>> p;
    auto f = p.get_future();
    svc_->send(who, r, [&p](Result<SendAck> a) { p.set_value(std::move(a)); });
    return f.get();
  }
  // Each push's (user, seq).
  static std::vector<std::pair<std::string, int64_t>> keys(const std::vector<json::object>& ps) {
    std::vector<std::pair<std::string, int64_t>> out;
    for (auto& p : ps)
      out.emplace_back(std::string(p.at("user_id").as_string()), p.at("seq").as_int64());
    return out;
  }
  FakeWebhook hook_;
};

TEST_F(Push, AnOfflineMemberIsPushedOnceAfterAFailedTry) {
  auto a = user("alice"), b = user("bob"), c = user("carol");
  auto g = group(a, {"bob", "carol"});
  svc_->device_online(c, "ws");  // carol is online: not pushed
  hook_.script = {500};
  ASSERT_TRUE(send(a, g, "hello"));
  auto pushes = hook_.wait(2);
  ASSERT_EQ(hook_.count(), 2u);
  EXPECT_EQ(keys(pushes), (std::vector<std::pair<std::string, int64_t>>{{"bob", 1}, {"bob", 1}}));
  EXPECT_EQ(pushes[1].at("preview").as_string(), "hello");
  EXPECT_EQ(pushes[1].at("publisher_id").as_string(), "alice");
  for (auto& [body, sig] : hook_.posts)
    EXPECT_EQ(sig, "sha256=" + hmac_sha256_hex("0123456789abcdef", body));
  // Nothing more comes: a later message's push is the next POST.
  svc_->device_online(b, "ws");
  auto d = user("dave");
  auto g2 = group(a, {"dave"});
  ASSERT_TRUE(send(a, g2, "later"));
  pushes = hook_.wait(3);
  ASSERT_EQ(hook_.count(), 3u);
  EXPECT_EQ(keys(pushes).back(), (std::pair<std::string, int64_t>{"dave", 1}));
  svc_->stop();  // the worker is done: its counters are final
  EXPECT_EQ(metrics_.push_sent_total.value(), 2u);
  EXPECT_EQ(metrics_.push_retried_total.value(), 1u);
  EXPECT_EQ(metrics_.push_skipped_online_total.value(), 1u);  // carol
  EXPECT_EQ(metrics_.push_requests_total.value(), 3u);
  EXPECT_EQ(metrics_.push_request_failures_total.value(), 1u);
  (void)d;
}

TEST_F(Push, MuteSilencesAllButMentions) {
  auto a = user("alice"), b = user("bob"), c = user("carol");
  auto g = group(a, {"bob", "carol"});
  ASSERT_TRUE(svc_->set_muted(b, g, true));
  ASSERT_TRUE(send(a, g, "plain"));           // carol only
  ASSERT_TRUE(send_mentions(a, g, {"bob"}));  // bob (mentioned) and carol
  ASSERT_TRUE(send_mentions(c, g, {"all"}).error().code == Errc::forbidden);  // not the owner
  ASSERT_TRUE(send_mentions(a, g, {"all"}));  // both, both mentioned
  auto pushes = hook_.wait_pushes(5);
  ASSERT_EQ(pushes.size(), 5u);
  std::map<std::pair<std::string, int64_t>, bool> got;
  for (auto& p : pushes)
    got[{std::string(p.at("user_id").as_string()), p.at("seq").as_int64()}] =
        p.at("mentioned").as_bool();
  const std::map<std::pair<std::string, int64_t>, bool> want{{{"carol", 1}, false},
                                                             {{"bob", 2}, true},
                                                             {{"carol", 2}, false},
                                                             {{"bob", 3}, true},
                                                             {{"carol", 3}, true}};
  EXPECT_EQ(got, want);
  svc_->stop();
  EXPECT_EQ(metrics_.push_skipped_muted_total.value(), 1u);
  (void)c;
}

TEST_F(Push, MentionsMustBeMembersAndAllIsTheOwners) {
  auto a = user("alice"), b = user("bob");
  user("zed");
  auto g = group(a, {"bob"});
  EXPECT_EQ(send_mentions(a, g, {"zed"}).error().code, Errc::bad_request);
  EXPECT_EQ(send_mentions(b, g, {"all"}).error().code, Errc::forbidden);
  EXPECT_TRUE(svc_->history(a, g, 0, 0, 10)->empty());
  auto ok = send_mentions(b, g, {"alice"});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->seq, 1);
  auto h = svc_->history(a, g, 0, 0, 10);
  ASSERT_EQ(h->size(), 1u);
  EXPECT_EQ(h->front().mentions, (std::vector<std::string>{"alice"}));
}

TEST_F(Push, GivenUpAfterRetryMaxTriesIsADeadLetterForAdmins) {
  auto a = user("alice"), b = user("bob");
  auto g = group(a, {"bob"});
  hook_.script = {500, 0, 503};  // the second is a timeout
  ASSERT_TRUE(send(a, g, "doomed"));
  hook_.wait(3);
  // Recorded after the third POST: the dead letter appears.
  Result<std::vector<PushRecord>> dead = std::vector<PushRecord>{};
  AuthContext admin = a;
  admin.is_admin = true;
  for (int i = 0; i < 200; ++i) {
    dead = svc_->push_dead_letters(admin, 10);
    if (dead && !dead->empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling the store, bounded
  }
  ASSERT_TRUE(dead);
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_EQ(dead->front().user_id, "bob");
  EXPECT_EQ(dead->front().attempts, 3);
  EXPECT_EQ(dead->front().last_error, "HTTP 503");
  EXPECT_EQ(svc_->push_dead_letters(a, 10).error().code, Errc::forbidden);
  EXPECT_EQ(hook_.count(), 3u);
  EXPECT_EQ(metrics_.push_dead_letters_total.value(), 1u);
  (void)b;
}

}  // namespace
