// The persistent SessionStore (session.hpp): sessions in memory as the in-memory store keeps
// them, each change also recorded as a pending write that the "mqtt-sessions" thread puts into
// the store, batched: one transaction per pass, whatever the number of sessions that changed.
//
// A session's pending write coalesces everything since the last pass (a connect, a few
// subscribes and a disconnect become one row and a few subscription rows). A session whose
// expiry is 0 ends with its connection: it is not kept, and whatever an earlier session of
// that client id left is erased.
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "base/clock.hpp"
#include "base/process.hpp"
#include "gateway/mqtt/session.hpp"

namespace converge::mqtt {

namespace {

// How often expired sessions that no node holds are dropped from the store.
constexpr auto kExpireEvery = std::chrono::seconds(60);
// A pass waits this long for more changes to gather.
constexpr auto kGather = std::chrono::milliseconds(20);

MqttSubRow sub_row(const std::string& filter, const SubOptions& o) {
  MqttSubRow r;
  r.filter = filter;
  r.qos = o.qos;
  r.no_local = o.no_local;
  r.retain_as_published = o.retain_as_published;
  r.retain_handling = o.retain_handling;
  r.subscription_id = o.subscription_id;
  return r;
}

class PersistentSessionStore final : public SessionStore {
 public:
  PersistentSessionStore(Store& store, std::string node_id, bool sole_node, std::size_t max_queued)
      : store_(store),
        node_id_(std::move(node_id)),
        sole_node_(sole_node),
        mem_(make_memory_session_store(max_queued)) {
    thread_ = std::thread([this] { run(); });
  }
  ~PersistentSessionStore() override { close(); }

  // --- under the broker's mutex: memory first, then a pending write ---
  std::shared_ptr<Session> find(std::string_view client_id) override {
    return mem_->find(client_id);
  }
  std::shared_ptr<Session> create(const std::string& client_id,
                                  std::optional<std::string> username) override {
    auto s = mem_->create(client_id, std::move(username));
    std::lock_guard lk(mu_);
    Pending& p = pending_[client_id];
    p = Pending{};
    p.reset = true;
    p.row = row_of(*s);
    wake();
    return s;
  }
  std::shared_ptr<Session> restore(const StoredSession& row) override {
    // Straight into memory: the store has it already.
    return mem_->restore(row);
  }
  void erase(const Session& s) override {
    mem_->erase(s);
    std::lock_guard lk(mu_);
    Pending& p = pending_[s.client_id];
    p = Pending{};
    p.erase = true;
    wake();
  }
  void forget(const Session& s) override {
    mem_->erase(s);
    std::lock_guard lk(mu_);
    pending_.erase(s.client_id);  // the other node's writes win
  }
  void set_expiry(Session& s, uint32_t expiry_s) override {
    mem_->set_expiry(s, expiry_s);
    touch(s);
  }
  void set_will(Session& s, std::optional<Will> will) override {
    mem_->set_will(s, std::move(will));  // wills are not kept
  }
  void subscribed(Session& s, const std::string& filter, const SubOptions& o) override {
    mem_->subscribed(s, filter, o);
    std::lock_guard lk(mu_);
    Pending& p = pending_[s.client_id];
    if (p.erase) return;  // ended: its subscriptions go with it
    p.subs[filter] = sub_row(filter, o);
    wake();
  }
  void unsubscribed(Session& s, const std::string& filter) override {
    mem_->unsubscribed(s, filter);
    std::lock_guard lk(mu_);
    Pending& p = pending_[s.client_id];
    if (p.erase) return;
    p.subs[filter] = std::nullopt;
    wake();
  }
  void connected(Session& s) override {
    s.disconnected_at_ms = 0;
    touch(s);
  }
  void disconnected(Session& s) override {
    s.disconnected_at_ms = now_ms();
    touch(s);
  }

  // --- under a session's mutex ---
  bool enqueue(Session& s, Outgoing o) override { return mem_->enqueue(s, std::move(o)); }
  std::optional<Outgoing> dequeue(Session& s) override { return mem_->dequeue(s); }
  std::size_t size() const override { return mem_->size(); }

  bool persistent() const override { return true; }

  // --- no lock held, on the work pool ---
  std::optional<StoredSession> load(const std::string& client_id) override {
    {
      // Erased here and not yet written: the store's row is stale.
      std::lock_guard lk(mu_);
      auto erased = [&](const std::unordered_map<std::string, Pending>& m) {
        auto it = m.find(client_id);
        return it != m.end() && it->second.erase;
      };
      if (erased(pending_) || erased(writing_)) return std::nullopt;
    }
    std::lock_guard rl(read_mu_);
    if (!reader_) {
      auto s = store_.open_session();
      if (!s) {
        spdlog::warn("mqtt sessions: {}", s.error().message);
        return std::nullopt;
      }
      reader_ = std::move(s.value());
    }
    auto r = reader_->mqtt_session_get(client_id);
    if (!r) {
      spdlog::warn("mqtt sessions: reading {}: {}", client_id, r.error().message);
      reader_.reset();
      return std::nullopt;
    }
    auto& row = r.value();
    if (!row) return std::nullopt;
    if (row->disconnected_at_ms > 0 && row->disconnected_at_ms + row->expiry_s * 1000 <= now_ms()) {
      return std::nullopt;  // expired: the next sweep drops it
    }
    return std::move(*row);
  }

  void close() override {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      stopping_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Pending {
    bool erase = false;
    bool reset = false;  // a new session: the store's subscriptions of that id go first
    std::optional<MqttSessionRow> row;
    std::map<std::string, std::optional<MqttSubRow>> subs;
  };

  MqttSessionRow row_of(const Session& s) const {
    MqttSessionRow r;
    r.client_id = s.client_id;
    r.user_id = s.username.value_or("");
    r.expiry_s = s.expiry_s;
    r.disconnected_at_ms = s.disconnected_at_ms;
    r.node_id = node_id_;
    return r;
  }

  void touch(Session& s) {
    std::lock_guard lk(mu_);
    Pending& p = pending_[s.client_id];
    if (p.erase) return;
    p.row = row_of(s);
    wake();
  }

  void wake() {
    if (!woken_) {
      woken_ = true;
      cv_.notify_one();
    }
  }

  void run() {
    name_this_thread("mqtt-sessions");
    std::unique_ptr<StoreSession> session;
    bool released = false;
    auto next_expire = std::chrono::steady_clock::now();
    int64_t backoff_ms = 100;
    for (;;) {
      bool stop;
      {
        std::unique_lock lk(mu_);
        cv_.wait_until(lk, next_expire, [&] { return stopping_ || !pending_.empty(); });
        stop = stopping_;
      }
      if (!stop) std::this_thread::sleep_for(kGather);  // let a burst of connects gather
      if (!session) {
        auto s = store_.open_session();
        if (s) {
          session = std::move(s.value());
        } else {
          spdlog::warn("mqtt sessions: {}", s.error().message);
        }
      }
      bool ok = session != nullptr;
      if (ok && !released) {
        // The sessions this node served when it stopped: disconnected now.
        ok = static_cast<bool>(
            session->mqtt_sessions_release(sole_node_ ? std::string() : node_id_, now_ms()));
        released = ok;
      }
      if (ok) ok = flush(*session);
      if (ok && std::chrono::steady_clock::now() >= next_expire) {
        auto n = session->mqtt_sessions_expire(now_ms());
        ok = static_cast<bool>(n);
        if (ok && n.value() > 0) spdlog::info("mqtt sessions: {} expired", n.value());
        next_expire = std::chrono::steady_clock::now() + kExpireEvery;
      }
      if (ok) {
        backoff_ms = 100;
        if (stop) return;
        continue;
      }
      session.reset();  // a failed statement may have left the connection unusable
      if (stop) {
        spdlog::warn("mqtt sessions: stopping with changes not written");
        return;
      }
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(backoff_ms), [&] { return stopping_; });
      backoff_ms = std::min<int64_t>(backoff_ms * 2, 5000);
    }
  }

  // One transaction for everything pending. On failure the writes go back under whatever
  // changed meanwhile (the newer change wins, as it would have in order).
  bool flush(StoreSession& s) {
    std::vector<MqttSessionWrite> writes;
    {
      std::lock_guard lk(mu_);
      woken_ = false;
      if (pending_.empty()) return true;
      writing_ = std::move(pending_);
      pending_.clear();
      writes.reserve(writing_.size());
      for (auto& [id, p] : writing_) {
        MqttSessionWrite w;
        w.client_id = id;
        // A session that ends with its connection is not kept.
        w.erase = p.erase || (p.row && p.row->expiry_s == 0);
        if (!w.erase) {
          w.row = p.row;
          w.reset_subs = p.reset;
          for (auto& [f, sub] : p.subs) w.subs.emplace_back(f, sub);
        }
        writes.push_back(std::move(w));
      }
    }
    Status st = s.begin();
    if (st) st = s.mqtt_sessions_write(writes);
    if (st) st = s.commit();
    std::lock_guard lk(mu_);
    if (st) {
      writing_.clear();
      return true;
    }
    s.rollback();
    spdlog::warn("mqtt sessions: writing {} sessions: {}", writes.size(), st.error().message);
    for (auto& [id, p] : writing_) {
      auto it = pending_.find(id);
      if (it == pending_.end()) {
        pending_.emplace(id, std::move(p));
        continue;
      }
      Pending& newer = it->second;
      if (newer.erase || newer.reset) continue;  // replaces the older write entirely
      if (!newer.row) newer.row = std::move(p.row);
      newer.reset = p.reset;
      newer.erase = p.erase;
      for (auto& [f, sub] : p.subs) newer.subs.emplace(f, std::move(sub));  // newer ones stay
    }
    writing_.clear();
    return false;
  }

  Store& store_;
  const std::string node_id_;
  const bool sole_node_;
  std::unique_ptr<SessionStore> mem_;

  std::mutex mu_;  // after the broker's (and a session's) mutex
  std::condition_variable cv_;
  std::unordered_map<std::string, Pending> pending_;
  std::unordered_map<std::string, Pending> writing_;  // the pass under way
  bool woken_ = false;
  bool stopping_ = false;

  std::mutex read_mu_;
  std::unique_ptr<StoreSession> reader_;

  std::thread thread_;
};

}  // namespace

std::unique_ptr<SessionStore> make_persistent_session_store(Store& store, std::string node_id,
                                                            bool sole_node,
                                                            std::size_t max_queued_messages) {
  return std::make_unique<PersistentSessionStore>(store, std::move(node_id), sole_node,
                                                  max_queued_messages);
}

}  // namespace converge::mqtt
