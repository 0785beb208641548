#pragma once
// A real service on a real SQLite store in a temp dir, with the in-process bus, for unit tests.
#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>

#include "bus/local/local_bus.hpp"
#include "service/service.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace converge::testing {

// A network thread stand-in: tasks posted here run when the test drains the loop.
class ManualLoop {
 public:
  void post(std::function<void()> fn) {
    std::lock_guard lk(mu_);
    q_.push_back(std::move(fn));
    cv_.notify_all();
  }
  // Runs tasks until `done()` holds or `timeout` passes.
  bool run_until(const std::function<bool()>& done,
                 std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      std::function<void()> fn;
      {
        std::unique_lock lk(mu_);
        if (!cv_.wait_until(lk, deadline, [&] { return !q_.empty(); })) return done();
        fn = std::move(q_.front());
        q_.pop_front();
      }
      fn();
    }
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
};

class ServiceFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto_init());
    static int n = 0;
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ("converge_svc_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto st = open_sqlite_store(SqliteOptions{(dir_ / "t.db").string(), false});
    ASSERT_TRUE(st) << st.error().message;
    store_ = std::move(st.value());
    bus_ = make_local_bus();
    shard_ = hub_.add_shard([this](std::function<void()> fn) { loop_.post(std::move(fn)); });
    bus_->set_listener(&hub_);
    ServiceOptions o;
    o.files_dir = (dir_ / "files").string();
    o.password_cost = password_cost_min();
    o.open_registration = open_registration_;
    o.sync_page_max = 50;
    o.work_threads = 2;
    tune(o);
    svc_ = std::make_unique<Service>(o, *store_, *bus_, hub_, metrics_);
    ASSERT_TRUE(svc_->start());
  }
  void TearDown() override {
    svc_->stop();
    svc_.reset();
    std::filesystem::remove_all(dir_);
  }

  AuthContext user(const std::string& id, const std::string& device = "d1") {
    auto u = svc_->register_user(id, "", "pw", false, false);
    if (!u && u.error().code != Errc::conflict) ADD_FAILURE() << u.error().message;
    auto l = svc_->login(id, "pw", device);
    EXPECT_TRUE(l) << (l ? "" : l.error().message);
    return l ? l->auth : AuthContext{};
  }

  ConversationId group(const AuthContext& who, std::vector<std::string> members) {
    CreateConversationRequest r;
    r.type = ConversationType::group;
    r.members = std::move(members);
    auto c = svc_->create_conversation(who, r);
    EXPECT_TRUE(c) << (c ? "" : c.error().message);
    return c ? c->first.id : 0;
  }

  Result<SendAck> send(const AuthContext& who, ConversationId c, const std::string& body,
                       const std::string& cmid = "") {
    SendRequest r;
    r.conversation_id = c;
    r.body = body;
    r.client_msg_id = cmid;
    std::promise<Result<SendAck>> p;
    auto f = p.get_future();
    svc_->send(who, r, [&p](Result<SendAck> a) { p.set_value(std::move(a)); });
    return f.get();
  }

  // Fixtures override to change options before the service starts.
  virtual void tune(ServiceOptions&) {}

  bool open_registration_ = true;
  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Bus> bus_;
  Metrics metrics_;
  Hub hub_;
  ManualLoop loop_;
  int shard_ = 0;
  std::unique_ptr<Service> svc_;
};

}  // namespace converge::testing
