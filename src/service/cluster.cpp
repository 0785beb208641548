#include "service/cluster.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <future>

#include <sys/resource.h>

#include "base/clock.hpp"
#include "base/metrics.hpp"
#include "base/process.hpp"
#include "proto/codec.hpp"
#include "service/service.hpp"

namespace converge {

namespace {
std::shared_ptr<const MemberList> as_list(const std::set<std::string>& users) {
  return std::make_shared<const MemberList>(users.begin(), users.end());  // sorted
}
}  // namespace

Cluster::Cluster(Service& svc, Bus& bus, Hub& hub, Metrics& metrics, ClusterOptions opts)
    : svc_(svc),
      bus_(bus),
      hub_(hub),
      metrics_(metrics),
      opts_(std::move(opts)),
      started_at_ms_(now_ms()),
      inbox_(1, "inbox") {}

Cluster::~Cluster() {
  stop();
}

void Cluster::start() {
  svc_.share_presence();
  beater_ = std::thread([this] {
    name_this_thread("cluster");
    beat();
  });
}

void Cluster::stop() {
  {
    std::lock_guard lk(beat_mu_);
    stopping_ = true;
  }
  beat_cv_.notify_all();
  if (beater_.joinable()) beater_.join();
  inbox_.stop();
}

void Cluster::set_address(std::string url) {
  std::lock_guard lk(mu_);
  address_ = std::move(url);
}

namespace {
// The process's CPU time between two samples, as a share of the machine's CPUs.
class CpuMeter {
 public:
  int64_t sample() {
    const int64_t cpu = process_cpu_us(), wall = mono_us();
    int64_t pct = 0;
    if (wall_ > 0 && wall > wall_) {
      const int64_t cpus = std::max(1u, std::thread::hardware_concurrency());
      pct = std::clamp<int64_t>((cpu - cpu_) * 100 / ((wall - wall_) * cpus), 0, 100);
    }
    cpu_ = cpu;
    wall_ = wall;
    return pct;
  }

 private:
  static int64_t process_cpu_us() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return (static_cast<int64_t>(u.ru_utime.tv_sec) + u.ru_stime.tv_sec) * 1000000 +
           u.ru_utime.tv_usec + u.ru_stime.tv_usec;
  }
  int64_t cpu_ = 0, wall_ = 0;
};
}  // namespace

void Cluster::beat() {
  CpuMeter cpu;
  std::unique_lock lk(beat_mu_);
  while (!stopping_) {
    auto n = std::make_shared<Notice>();
    n->kind = Notice::Kind::node;
    n->user_id = opts_.node_id;
    n->started_at_ms = started_at_ms_;
    n->connections = hub_.sinks();
    {
      std::lock_guard g(mu_);
      cpu_percent_ = cpu.sample();
      n->address = address_;
      n->cpu_percent = cpu_percent_;
    }
    n->publish_losses = static_cast<int64_t>(bus_.publish_losses());
    lk.unlock();
    bus_.publish(std::shared_ptr<const Notice>(std::move(n)));
    svc_.probe_store();
    std::vector<std::string> dead;
    {
      std::lock_guard g(mu_);
      const int64_t now = now_ms();
      for (auto it = peers_.begin(); it != peers_.end();) {
        if (now - it->second.last_seen_ms > opts_.timeout_ms) {
          dead.push_back(it->first);
          it = peers_.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (!dead.empty()) {
      // Whatever a dead node stored and did not publish is only in the store: every stream
      // here catches up from it.
      // One notice per death for the admins: from the node alive with the lowest id.
      bool reporter;
      {
        std::lock_guard g(mu_);
        reporter = std::all_of(peers_.begin(), peers_.end(),
                               [&](auto& p) { return opts_.node_id < p.first; });
      }
      for (auto& d : dead) {
        spdlog::warn("cluster: node {} is silent: taken for dead", d);
        svc_.forget_node(d);  // its users count as offline
        if (reporter)
          (void)svc_.notify_admins(proto::serialize(boost::json::object{
              {"event", "node_lost"}, {"node_id", d}, {"reported_by", opts_.node_id}}));
      }
      metrics_.cluster_nodes_lost_total.add(static_cast<int64_t>(dead.size()));
      hub_.resync_all();
    }
    lk.lock();
    beat_cv_.wait_for(lk, std::chrono::milliseconds(opts_.heartbeat_ms),
                      [this] { return stopping_; });
  }
}

std::vector<NodeInfo> Cluster::nodes() const {
  std::vector<NodeInfo> out;
  std::lock_guard lk(mu_);
  out.push_back(NodeInfo{opts_.node_id, started_at_ms_, now_ms(), hub_.sinks(), address_,
                         cpu_percent_, true});
  for (auto& [_, p] : peers_) out.push_back(p);
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.id < b.id; });
  return out;
}

void Cluster::add_locked(ConversationId id, const std::string& user, int64_t version) {
  auto& c = convs_[id];
  bool first = c.users.empty();
  if (!c.users.insert(user).second) return;
  if (version >= 0) c.members_version = version;
  c.list = as_list(c.users);
  user_convs_[user].insert(id);
  if (first) bus_.bind_conversation(id, true);
}

void Cluster::remove_locked(ConversationId id, const std::string& user) {
  auto it = convs_.find(id);
  if (it == convs_.end() || it->second.users.erase(user) == 0) return;
  if (auto u = user_convs_.find(user); u != user_convs_.end()) u->second.erase(id);
  if (it->second.users.empty()) {
    convs_.erase(it);
    bus_.bind_conversation(id, false);
  } else {
    it->second.list = as_list(it->second.users);
  }
}

void Cluster::device_online(const std::string& user_id, bool is_admin) {
  {
    std::lock_guard lk(mu_);
    if (is_admin && ++admins_[user_id] == 1) bus_.bind_admin(user_id, true);
    if (++devices_[user_id] > 1) return;
  }
  bus_.bind_user(user_id, true);
  AuthContext who;
  who.user_id = user_id;
  auto convs = svc_.list_conversations(who);
  {
    std::lock_guard lk(mu_);
    if (devices_[user_id] > 0 && convs)
      for (auto& c : convs.value()) add_locked(c.id, user_id, -1);
  }
  // Wait until the bindings hold at the broker: the caller reads the device's positions next,
  // and whatever is stored after that read must reach this node.
  auto bound = std::make_shared<std::promise<void>>();
  auto f = bound->get_future();
  bus_.when_bound([bound] { bound->set_value(); });
  if (f.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
    spdlog::warn("bus: bindings for {} not confirmed within 5 s", user_id);
}

void Cluster::device_offline(const std::string& user_id, bool is_admin) {
  std::lock_guard lk(mu_);
  if (is_admin)
    if (auto a = admins_.find(user_id); a != admins_.end() && --a->second == 0) {
      admins_.erase(a);
      bus_.bind_admin(user_id, false);
    }
  auto it = devices_.find(user_id);
  if (it == devices_.end() || --it->second > 0) return;
  devices_.erase(it);
  if (auto u = user_convs_.find(user_id); u != user_convs_.end()) {
    auto ids = u->second;
    for (auto id : ids) remove_locked(id, user_id);
    user_convs_.erase(user_id);
  }
  bus_.bind_user(user_id, false);
}

void Cluster::on_notice(const std::shared_ptr<const Notice>& n) {
  if (n->kind == Notice::Kind::node) {
    if (n->user_id == opts_.node_id) return;
    bool lost;
    {
      std::lock_guard lk(mu_);
      auto& p = peers_[n->user_id];
      bool fresh = p.id.empty();
      // The node failed to publish stored messages since its last heartbeat (its publishing
      // connection went, or its queue overflowed): they are in the store only. Counted against
      // the last heartbeat of the same run of that node, even one from before it was taken for
      // dead (its heartbeats are lost with its publishes).
      auto& seen = losses_seen_[n->user_id];
      lost = seen.first == n->started_at_ms && n->publish_losses > seen.second;
      seen = {n->started_at_ms, n->publish_losses};
      p = NodeInfo{n->user_id, n->started_at_ms, now_ms(), n->connections,
                   n->address, n->cpu_percent,   false};
      p.publish_losses = n->publish_losses;
      if (fresh) spdlog::info("cluster: node {} is here", n->user_id);
    }
    if (lost) {
      spdlog::warn("cluster: node {} lost publishes: catching up from the store", n->user_id);
      metrics_.cluster_publish_gaps_total.add();
      hub_.resync_all();
    }
    return;
  }
  if (n->kind == Notice::Kind::conversation) {
    // Keep the interest current: a local user added to (or created into) a conversation is
    // bound to it, a removed one unbound.
    std::vector<std::string> joined;  // local users newly in it
    {
      std::lock_guard lk(mu_);
      const auto& c = n->conversation;
      for (auto& uid : n->user_ids) {
        if (!devices_.count(uid)) continue;
        bool member = std::any_of(c.members.begin(), c.members.end(),
                                  [&](const Member& m) { return m.user_id == uid; });
        if (member) {
          auto it = convs_.find(c.id);
          if (it == convs_.end() || !it->second.users.count(uid)) joined.push_back(uid);
          add_locked(c.id, uid, c.members_version);
        } else {
          remove_locked(c.id, uid);
        }
      }
    }
    if (!joined.empty()) {
      // Messages stored before the new binding held did not come here: once it holds, those
      // users' streams catch up from the store.
      bus_.when_bound(
          [this, joined = std::move(joined)]() mutable { hub_.resync_users(std::move(joined)); });
    }
  }
  hub_.on_notice(n);
}

std::shared_ptr<const MemberList> Cluster::members_for(ConversationId id, int64_t version) {
  {
    std::lock_guard lk(mu_);
    auto it = convs_.find(id);
    if (it == convs_.end()) return nullptr;  // nobody here (a binding on its way out)
    if (it->second.members_version == version) return it->second.list;
  }
  // The membership changed since this node last looked (or it never did): read it, so that a
  // removed member gets nothing stored after the removal and an added one gets what follows.
  auto c = svc_.conversation_members(id);
  std::lock_guard lk(mu_);
  if (!c) {
    auto it = convs_.find(id);
    return it == convs_.end() ? nullptr : it->second.list;
  }
  std::set<std::string> members;
  for (auto& m : c->members) members.insert(m.user_id);
  auto it = convs_.find(id);
  std::vector<std::string> gone;
  if (it != convs_.end())
    for (auto& u : it->second.users)
      if (!members.count(u)) gone.push_back(u);
  for (auto& u : gone) remove_locked(id, u);
  for (auto& m : members)
    if (devices_.count(m)) add_locked(id, m, c->members_version);
  it = convs_.find(id);
  if (it == convs_.end()) return nullptr;
  it->second.members_version = c->members_version;
  return it->second.list;
}

void Cluster::on_remote_messages(std::vector<RemoteMessage> batch) {
  metrics_.bus_remote_messages_total.add(static_cast<int64_t>(batch.size()));
  inbox_.post([this, batch = std::move(batch)]() mutable {
    std::vector<std::shared_ptr<const Delivery>> out;
    out.reserve(batch.size());
    for (auto& rm : batch) {
      if (!rm.frame) continue;
      auto members = members_for(rm.conversation_id, rm.members_version);
      if (!members || members->empty()) continue;
      auto msg = proto::parse_message_frame(*rm.frame);
      if (!msg || msg->conversation_id != rm.conversation_id || msg->seq != rm.seq) {
        spdlog::warn("bus: unreadable message from node {} (conversation {} seq {})", rm.origin,
                     rm.conversation_id, rm.seq);
        continue;
      }
      auto d = std::make_shared<Delivery>();
      d->msg = std::move(msg.value());
      d->members = std::move(members);
      d->members_version = rm.members_version;
      d->wire.set(WireCache::ws_frame, std::move(rm.frame));
      out.push_back(std::move(d));
    }
    if (!out.empty()) hub_.on_deliveries(out);
  });
}

void Cluster::on_center_request(CenterRequest r) {
  if (center_) return center_(std::move(r));
  bus_.center_done(r.tag);  // nobody to handle it: do not hold the broker's copy forever
}

void Cluster::on_bus_restored() {
  spdlog::info("bus: broker connection restored; devices catch up from the store");
  hub_.resync_all();
}

std::size_t Cluster::conversations_bound() const {
  std::lock_guard lk(mu_);
  return convs_.size();
}

bool Cluster::user_online(const std::string& user_id) const {
  std::lock_guard lk(mu_);
  return devices_.count(user_id) > 0;
}

}  // namespace converge
