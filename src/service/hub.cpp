#include "service/hub.hpp"

#include <algorithm>

namespace converge {

int Hub::add_shard(Post post) {
  auto s = std::make_unique<Shard>();
  s->post = std::move(post);
  shards_.push_back(std::move(s));
  return static_cast<int>(shards_.size()) - 1;
}

void Hub::attach(int shard, DeviceSink* sink) {
  auto& s = *shards_[static_cast<std::size_t>(shard)];
  s.by_user[sink->sink_user_id()].push_back(sink);
  s.count.fetch_add(1, std::memory_order_relaxed);
  ++s.epoch;
}

void Hub::detach(int shard, DeviceSink* sink) {
  auto& s = *shards_[static_cast<std::size_t>(shard)];
  auto it = s.by_user.find(sink->sink_user_id());
  if (it == s.by_user.end()) return;
  auto& v = it->second;
  auto pos = std::find(v.begin(), v.end(), sink);
  if (pos == v.end()) return;
  v.erase(pos);
  if (v.empty()) s.by_user.erase(it);
  s.count.fetch_sub(1, std::memory_order_relaxed);
  ++s.epoch;
}

void Hub::deliver_here(Shard* s, const Delivery& d, const std::shared_ptr<const Delivery>& p) {
  if (d.members->size() >= kResolveFrom) {
    auto found = s->resolved.find(d.members.get());
    if (found == s->resolved.end()) {
      if (s->resolved_members + d.members->size() > kResolvedMembers) {
        s->resolved.clear();
        s->resolved_members = 0;
      }
      found = s->resolved.emplace(d.members.get(), Resolved{}).first;
      s->resolved_members += d.members->size();
    }
    Resolved& r = found->second;
    if (r.members != d.members || r.epoch != s->epoch) {
      r.members = d.members;
      r.epoch = s->epoch;
      r.sinks.clear();
      for (auto& uid : *d.members)
        if (auto it = s->by_user.find(uid); it != s->by_user.end())
          r.sinks.insert(r.sinks.end(), it->second.begin(), it->second.end());
    }
    // As below, no sink detaches inside deliver(): the epoch holds while we walk.
    for (auto* sink : r.sinks) sink->deliver(p);
    return;
  }
  for (auto& uid : *d.members) {
    auto it = s->by_user.find(uid);
    if (it == s->by_user.end()) continue;
    // Sinks never detach synchronously inside deliver() (they post their close), so the
    // vector is stable while we walk it.
    for (auto* sink : it->second) sink->deliver(p);
  }
}

void Hub::on_delivery(const std::shared_ptr<const Delivery>& d) {
  if (!d->members) return;
  for (auto& sp : shards_) {
    Shard* s = sp.get();
    if (s->count.load(std::memory_order_relaxed) == 0) continue;
    s->post([s, d] { deliver_here(s, *d, d); });
  }
}

void Hub::on_deliveries(const std::vector<std::shared_ptr<const Delivery>>& batch) {
  if (batch.empty()) return;
  auto shared = std::make_shared<const std::vector<std::shared_ptr<const Delivery>>>(batch);
  for (auto& sp : shards_) {
    Shard* s = sp.get();
    if (s->count.load(std::memory_order_relaxed) == 0) continue;
    s->post([s, shared] {
      for (auto& d : *shared)
        if (d->members) deliver_here(s, *d, d);
    });
  }
}

void Hub::on_notice(const std::shared_ptr<const Notice>& n) {
  for (auto& sp : shards_) {
    Shard* s = sp.get();
    if (s->count.load(std::memory_order_relaxed) == 0) continue;
    s->post([s, n] {
      std::vector<DeviceSink*> targets;
      if (n->kind == Notice::Kind::broadcast) {
        for (auto& [_, v] : s->by_user) targets.insert(targets.end(), v.begin(), v.end());
      } else if (n->kind == Notice::Kind::conversation) {
        for (auto& uid : n->user_ids)
          if (auto it = s->by_user.find(uid); it != s->by_user.end())
            targets.insert(targets.end(), it->second.begin(), it->second.end());
      } else if (auto it = s->by_user.find(n->user_id); it != s->by_user.end()) {
        targets = it->second;
      }
      for (auto* sink : targets) sink->notify(n);
    });
  }
}

void Hub::resync_all() {
  for (auto& sp : shards_) {
    Shard* s = sp.get();
    s->post([s] {
      std::vector<DeviceSink*> all;
      for (auto& [_, v] : s->by_user) all.insert(all.end(), v.begin(), v.end());
      for (auto* sink : all) sink->resync();
    });
  }
}

void Hub::resync_users(std::vector<std::string> user_ids) {
  auto ids = std::make_shared<const std::vector<std::string>>(std::move(user_ids));
  for (auto& sp : shards_) {
    Shard* s = sp.get();
    if (s->count.load(std::memory_order_relaxed) == 0) continue;
    s->post([s, ids] {
      std::vector<DeviceSink*> targets;
      for (auto& uid : *ids)
        if (auto it = s->by_user.find(uid); it != s->by_user.end())
          targets.insert(targets.end(), it->second.begin(), it->second.end());
      for (auto* sink : targets) sink->resync();
    });
  }
}

int64_t Hub::sinks() const {
  int64_t n = 0;
  for (auto& s : shards_) n += s->count.load(std::memory_order_relaxed);
  return n;
}

}  // namespace converge
