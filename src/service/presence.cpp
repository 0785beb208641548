#include "service/presence.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

#include "base/clock.hpp"
#include "base/process.hpp"

namespace converge {

namespace {
constexpr int kReassertS = 30;
}  // namespace

Presence::~Presence() {
  stop();
}

int64_t Presence::attach(const std::string& user, const std::string& device,
                         const std::string& protocol) {
  std::lock_guard lk(mu_);
  int64_t id = next_id_++;
  conns_.emplace(id, PresenceRow{node_id_, id, user, device, protocol, now_ms()});
  by_user_.emplace(user, id);
  if (sharing_) {
    put_.insert(id);
    cv_.notify_one();
  }
  return id;
}

void Presence::detach(int64_t conn_id) {
  std::lock_guard lk(mu_);
  auto it = conns_.find(conn_id);
  if (it == conns_.end()) return;
  auto [b, e] = by_user_.equal_range(it->second.user_id);
  for (auto u = b; u != e; ++u)
    if (u->second == conn_id) {
      by_user_.erase(u);
      break;
    }
  conns_.erase(it);
  if (sharing_) {
    // Never told to the store: nothing to take back.
    if (put_.erase(conn_id) == 0) drop_.insert(conn_id);
    cv_.notify_one();
  }
}

std::vector<PresenceRow> Presence::local(std::span<const std::string> users) const {
  std::vector<PresenceRow> out;
  std::lock_guard lk(mu_);
  for (auto& u : users) {
    auto [b, e] = by_user_.equal_range(u);
    for (auto it = b; it != e; ++it) out.push_back(conns_.at(it->second));
  }
  return out;
}

bool Presence::online_here(const std::string& user) const {
  std::lock_guard lk(mu_);
  return by_user_.count(user) != 0;
}

std::size_t Presence::connections() const {
  std::lock_guard lk(mu_);
  return conns_.size();
}

void Presence::start_sharing(Store& store, int64_t flush_ms) {
  std::lock_guard lk(mu_);
  if (sharing_) return;
  store_ = &store;
  flush_ms_ = flush_ms;
  sharing_ = true;
  // The first pass replaces whatever an earlier run of this node left with what is here now.
  resync_ = true;
  thread_ = std::thread([this] { run(); });
}

void Presence::forget_node(const std::string& node_id) {
  std::lock_guard lk(mu_);
  if (!sharing_ || node_id == node_id_) return;
  forget_.insert(node_id);
  cv_.notify_one();
}

void Presence::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;
    stopping_ = true;
    cv_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
  // A clean stop takes this node's rows away (a crash leaves them to the others' timeout).
  if (store_) {
    auto s = store_->open_session();
    if (s) (void)s.value()->presence_clear(node_id_);
  }
}

void Presence::run() {
  name_this_thread("presence");
  std::unique_ptr<StoreSession> session;
  int64_t backoff_ms = 100;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      bool woken = cv_.wait_for(lk, std::chrono::seconds(kReassertS), [&] {
        return stopping_ || resync_ || !put_.empty() || !drop_.empty() || !forget_.empty();
      });
      if (stopping_) return;
      // Now and then every row goes again: a node taken for dead by mistake (its heartbeats
      // lost on the way) had its rows deleted by the others.
      if (!woken)
        for (auto& [id, row] : conns_) put_.insert(id);
    }
    // Let a burst of connects gather into one statement.
    std::this_thread::sleep_for(std::chrono::milliseconds(flush_ms_));
    if (!session) {
      auto s = store_->open_session();
      if (s) session = std::move(s.value());
    }
    if (session && flush(*session)) {
      backoff_ms = 100;
      continue;
    }
    session.reset();  // a failed statement may have left the connection unusable
    std::unique_lock lk(mu_);
    if (!resync_) spdlog::warn("presence: the store refused an update; retrying");
    resync_ = true;
    cv_.wait_for(lk, std::chrono::milliseconds(backoff_ms), [&] { return stopping_; });
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 5000);
  }
}

bool Presence::flush(StoreSession& s) {
  std::vector<PresenceRow> puts;
  std::vector<int64_t> drops;
  std::vector<std::string> forget;
  bool resync;
  {
    std::lock_guard lk(mu_);
    resync = resync_;
    if (resync) {
      for (auto& [id, row] : conns_) puts.push_back(row);
    } else {
      for (auto id : put_)
        if (auto it = conns_.find(id); it != conns_.end()) puts.push_back(it->second);
      drops.assign(drop_.begin(), drop_.end());
    }
    forget.assign(forget_.begin(), forget_.end());
    resync_ = false;
    put_.clear();
    drop_.clear();
    forget_.clear();
  }
  // A resync replaces this node's rows in one transaction: readers never see them missing.
  Status st = resync ? s.begin() : ok_status();
  if (st && resync) st = s.presence_clear(node_id_);
  if (st) st = s.presence_put(puts);
  if (st) st = s.presence_drop(node_id_, drops);
  if (st && resync) st = s.commit();
  // A dead node's connections are gone: its rows, and the MQTT sessions it served, which now
  // count as disconnected (their expiry runs from here).
  for (auto& n : forget) {
    if (st) st = s.presence_clear(n);
    if (st) st = s.mqtt_sessions_release(n, now_ms());
  }
  if (!st && resync) s.rollback();
  if (st) {
    if (resync) spdlog::info("presence: {} connections shared again", puts.size());
    return true;
  }
  // Everything goes again: the resync covers puts and drops; dead nodes are asked again.
  std::lock_guard lk(mu_);
  resync_ = true;
  forget_.insert(forget.begin(), forget.end());
  return false;
}

}  // namespace converge
