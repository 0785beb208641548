// The in-memory SessionStore: sessions live as long as the process.
#include <unordered_map>

#include "gateway/mqtt/session.hpp"

namespace converge::mqtt {

std::shared_ptr<Session> SessionStore::restore(const StoredSession& row) {
  auto s = create(row.client_id,
                  row.user_id.empty() ? std::nullopt : std::optional<std::string>(row.user_id));
  s->expiry_s = static_cast<uint32_t>(row.expiry_s);
  for (const auto& sub : row.subs) {
    SubOptions o;
    o.qos = sub.qos;
    o.no_local = sub.no_local;
    o.retain_as_published = sub.retain_as_published;
    o.retain_handling = sub.retain_handling;
    o.subscription_id = sub.subscription_id;
    s->subscriptions[sub.filter] = o;
  }
  return s;
}

namespace {

class MemorySessionStore final : public SessionStore {
 public:
  explicit MemorySessionStore(std::size_t max_queued) : max_queued_(max_queued) {}

  std::shared_ptr<Session> find(std::string_view client_id) override {
    auto it = sessions_.find(client_id);
    return it == sessions_.end() ? nullptr : it->second;
  }
  std::shared_ptr<Session> create(const std::string& client_id,
                                  std::optional<std::string> username) override {
    auto s = std::make_shared<Session>(client_id, std::move(username), ++last_id_);
    sessions_[client_id] = s;
    return s;
  }
  void erase(const Session& s) override {
    auto it = sessions_.find(s.client_id);
    if (it != sessions_.end() && it->second.get() == &s) sessions_.erase(it);
  }
  void set_expiry(Session& s, uint32_t expiry_s) override { s.expiry_s = expiry_s; }
  void set_will(Session& s, std::optional<Will> will) override { s.will = std::move(will); }
  void subscribed(Session& s, const std::string& filter, const SubOptions& o) override {
    s.subscriptions[filter] = o;
  }
  void unsubscribed(Session& s, const std::string& filter) override {
    s.subscriptions.erase(filter);
  }
  bool enqueue(Session& s, Outgoing o) override {
    if (s.queue.size() >= max_queued_) return false;
    s.queue.push_back(std::move(o));
    return true;
  }
  std::optional<Outgoing> dequeue(Session& s) override {
    if (s.queue.empty()) return std::nullopt;
    Outgoing o = std::move(s.queue.front());
    s.queue.pop_front();
    return o;
  }
  std::size_t size() const override { return sessions_.size(); }

 private:
  std::size_t max_queued_;
  SubscriberId last_id_ = 0;
  std::unordered_map<std::string, std::shared_ptr<Session>, detail::StringHash, std::equal_to<>>
      sessions_;
};

}  // namespace

std::unique_ptr<SessionStore> make_memory_session_store(std::size_t max_queued_messages) {
  return std::make_unique<MemorySessionStore>(max_queued_messages);
}

}  // namespace converge::mqtt
