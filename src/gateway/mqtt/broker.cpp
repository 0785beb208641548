// The broker's shared state (broker_core.hpp): sessions, routing, retained messages, wills and
// the timers (delayed wills, session expiry, $SYS), and the Broker facade of broker.hpp.
#include "gateway/mqtt/broker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/metrics.hpp"
#include "bus/bus.hpp"
#include "gateway/mqtt/broker_core.hpp"
#include "gateway/mqtt/bus_route.hpp"
#include "gateway/mqtt/client.hpp"
#include "gateway/mqtt/codec/codec.hpp"
#include "gateway/mqtt/codec/wire.hpp"
#include "gateway/mqtt/topic.hpp"
#include "service/service.hpp"

namespace converge::mqtt {

bool im_prefix(std::string_view t) {
  if (auto shared = parse_shared(t)) return im_prefix(shared->filter);
  auto first = t.substr(0, t.find('/'));
  return first == "user" || first == "group";
}

std::string encode_publish(const Publish& p, std::string_view payload, Version v) {
  // The codec writes the header and properties; the payload is appended here, with the
  // remaining length rewritten, so that it is copied once, into the bytes sent.
  std::string head;
  encode(head, p, v);
  std::size_t pos = 1;
  uint32_t remaining = 0;
  for (int shift = 0; pos < head.size(); shift += 7) {
    auto b = static_cast<uint8_t>(head[pos++]);
    remaining |= static_cast<uint32_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) break;
  }
  std::string out;
  out.reserve(head.size() + payload.size() + 3);
  out.push_back(head[0]);
  wire::Writer w(out);
  w.varint(remaining + static_cast<uint32_t>(payload.size()));
  out.append(head, pos, std::string::npos);
  out.append(payload);
  return out;
}

Core::Core(BrokerOptions o, Service& s, Metrics& m, Acl a, TopicNamespace* i)
    : opts(std::move(o)),
      svc(s),
      metrics(m),
      acl(std::move(a)),
      im(i),
      store_(opts.session_store != nullptr
                 ? make_persistent_session_store(*opts.session_store, opts.node_id, opts.sole_node,
                                                 opts.max_queued_messages)
                 : make_memory_session_store(opts.max_queued_messages)),
      clustered_(!opts.sole_node) {}

Core::~Core() {
  stop();
}

void Core::count_dropped(uint64_t n) {
  metrics.mqtt_dropped_total.add(n);
  stats.dropped.fetch_add(n, std::memory_order_relaxed);
}

void Core::count_refused() {
  metrics.mqtt_refused_total.add();
  stats.refused.fetch_add(1, std::memory_order_relaxed);
}

// --- sessions ---

MessagePtr Core::will_message(const std::string& client_id, const Will& w) {
  auto m = std::make_shared<Message>();
  m->topic = w.topic;
  m->payload = w.payload;
  m->qos = w.qos;
  m->retain = w.retain;
  m->publisher = client_id;
  m->properties = w.properties;
  m->properties.will_delay_interval.reset();
  if (auto e = m->properties.message_expiry_interval) {
    m->expires_at = Clock::now() + std::chrono::seconds(*e);
    m->properties.message_expiry_interval.reset();
  }
  return m;
}

void Core::count_binding_locked(const std::string& filter, int delta) {
  if (!clustered_ || in_im(filter)) return;
  Bus& bus = svc.bus();
  const bool had_any = general_subs_ > 0;
  general_subs_ += delta;
  if (had_any != (general_subs_ > 0)) bus.bind_transient(std::string(kLongKey), !had_any);
  if (!crosses_nodes(filter)) return;
  std::string key = binding_key(filter);
  auto& n = bindings_[key];
  n += delta;
  if (n == delta && delta > 0) bus.bind_transient(key, true);
  if (n <= 0) {
    bindings_.erase(key);
    bus.bind_transient(key, false);
  }
}

void Core::remove_session_locked(Session& s, bool keep_record) {
  for (const auto& [filter, o] : s.subscriptions)
    if (subs_.erase(filter, s.id)) count_binding_locked(filter, -1);
  by_id_.erase(s.id);
  unschedule_locked(s);
  if (keep_record) {
    store_->forget(s);
  } else {
    store_->erase(s);
  }
  s.online = false;
  std::lock_guard slk(s.mu);
  s.removed = true;
}

Attached Core::attach_session(const std::shared_ptr<ClientImpl>& client,
                              const std::shared_ptr<Link>& link, const std::string& client_id,
                              const std::optional<std::string>& username, bool clean_start,
                              uint32_t expiry_s, std::optional<Will> will,
                              std::optional<StoredSession> loaded) {
  std::vector<MessagePtr> wills;
  std::shared_ptr<ClientImpl> old_owner;
  std::shared_ptr<Link> old_link;
  Attached a;
  // The session is connected on another node of the cluster: that connection is taken over.
  std::string elsewhere;
  {
    std::lock_guard lk(mu_);
    auto s = store_->find(client_id);
    if (!s && loaded && clustered_ && loaded->disconnected_at_ms == 0 &&
        loaded->node_id != opts.node_id && (loaded->user_id.empty() || loaded->user_id == username))
      elsewhere = loaded->node_id;
    if (!s && loaded) {
      // A session this node did not hold: served before a restart, or by another node.
      if (!loaded->user_id.empty() && loaded->user_id != username.value_or("")) {
        a.refused = true;
        return a;
      }
      if (!clean_start && loaded->user_id == username.value_or("")) {
        s = store_->restore(*loaded);
        by_id_[s->id] = s;
        for (const auto& [filter, o] : s->subscriptions)
          if (!in_im(filter) && subs_.insert(filter, s->id, o) == SubTree::Insert::added)
            count_binding_locked(filter, +1);
      }
    }
    if (s && s->username && s->username != username) {
      a.refused = true;
      return a;
    }
    if (s) {
      bool live_delay_zero = false;
      {
        std::lock_guard slk(s->mu);
        old_owner = s->owner.lock();
        old_link = s->owner_link;
        s->owner.reset();
        s->owner_key = nullptr;
        s->owner_link.reset();
      }
      const bool resumable = !clean_start && s->username == username;
      if (s->will) {
        // A live connection's will: published as on any close unless it is delayed and the
        // session continues; a delayed will of an offline session: cancelled by this
        // connection, unless the session ends here.
        live_delay_zero = s->online && s->will->properties.will_delay_interval.value_or(0) == 0;
        if (!resumable || live_delay_zero) wills.push_back(will_message(client_id, *s->will));
        store_->set_will(*s, std::nullopt);
        s->will_at.reset();
      }
      if (!resumable) {
        remove_session_locked(*s);
        s.reset();
      }
    }
    if (!s) {
      s = store_->create(client_id, username);
      by_id_[s->id] = s;
    } else {
      a.present = true;
      unschedule_locked(*s);
      s->expires_at.reset();
    }
    store_->set_expiry(*s, expiry_s);
    store_->set_will(*s, std::move(will));
    s->online = true;
    store_->connected(*s);
    {
      std::lock_guard slk(s->mu);
      s->owner = client;
      s->owner_key = client.get();
      s->owner_link = link;
      s->kick_pending = false;
    }
    a.session = std::move(s);
  }
  if (old_owner && old_link) {
    std::weak_ptr<ClientImpl> w = old_owner;
    old_link->post([w] {
      if (auto c = w.lock()) c->taken_over();
    });
  }
  if (!elsewhere.empty()) {
    svc.bus().publish_transient(std::string(kTakeoverPrefix) + elsewhere,
                                std::make_shared<const std::string>(client_id));
  }
  for (auto& m : wills) publish(m);
  return a;
}

void Core::detach_session(const ClientImpl* client, const std::shared_ptr<Session>& s,
                          bool send_will) {
  MessagePtr will_now;
  {
    std::lock_guard lk(mu_);
    {
      std::lock_guard slk(s->mu);
      if (s->owner_key != client) return;  // taken over meanwhile
      s->owner.reset();
      s->owner_key = nullptr;
      s->owner_link.reset();
      s->kick_pending = false;
    }
    s->online = false;
    if (s->removed) return;
    if (stopping.load()) return;  // a stopping node keeps sessions and sends no wills
    if (!send_will) store_->set_will(*s, std::nullopt);
    auto now = Clock::now();
    if (s->expiry_s == 0) {
      if (s->will) will_now = will_message(s->client_id, *s->will);
      remove_session_locked(*s);
    } else {
      s->expires_at = now + std::chrono::seconds(s->expiry_s);
      store_->disconnected(*s);
      if (s->will) {
        uint32_t delay = s->will->properties.will_delay_interval.value_or(0);
        if (delay == 0) {
          will_now = will_message(s->client_id, *s->will);
          store_->set_will(*s, std::nullopt);
        } else {
          s->will_at = now + std::chrono::seconds(std::min(delay, s->expiry_s));
        }
      }
      schedule_locked(s);
    }
  }
  if (will_now) publish(will_now);
}

void Core::set_expiry(const std::shared_ptr<Session>& s, uint32_t expiry_s) {
  std::lock_guard lk(mu_);
  if (!s->removed) store_->set_expiry(*s, expiry_s);
}

// --- subscriptions ---

namespace {

// How far back a SUBSCRIBE handled late is ordered against the messages routed meanwhile: well
// past a thread's scheduling delay on a loaded machine. Bounded in messages and bytes too.
constexpr int64_t kLateWindowNs = 250'000'000;
constexpr std::size_t kLateMaxMessages = 8192;
constexpr std::size_t kLateMaxBytes = 16 << 20;

std::size_t message_bytes(const Message& m) {
  return m.topic.size() + m.payload.size();
}

int64_t arrival_of(const Message& m, int64_t routed_ns) {
  return m.arrived_ns != 0 ? m.arrived_ns : routed_ns;
}

}  // namespace

void Core::remember_locked(const MessagePtr& m) {
  const int64_t now = arrival_now();
  recent_.push_back(Recent{now, m});
  recent_bytes_ += message_bytes(*m);
  while (!recent_.empty() && (recent_.front().routed_ns < now - kLateWindowNs ||
                              recent_.size() > kLateMaxMessages || recent_bytes_ > kLateMaxBytes)) {
    recent_bytes_ -= message_bytes(*recent_.front().m);
    recent_.pop_front();
  }
}

bool Core::subscribe(const std::shared_ptr<Session>& s, const std::string& filter,
                     const SubOptions& o, int64_t arrived_ns, std::vector<MessagePtr>* late) {
  std::lock_guard lk(mu_);
  if (s->removed) return false;
  auto r = subs_.insert(filter, s->id, o);
  if (r == SubTree::Insert::invalid) return false;
  store_->subscribed(*s, filter, o);
  if (r != SubTree::Insert::added) return false;  // replaced: the session had it already
  count_binding_locked(filter, +1);
  if (late == nullptr || is_shared(filter)) return true;
  // Messages routed before the SUBSCRIBE arrived cannot have arrived after it: the scan stops
  // there (the window's start at the latest).
  const auto now = Clock::now();
  const int64_t since = std::max(arrived_ns, arrival_now() - kLateWindowNs);
  const std::size_t first = late->size();
  for (auto it = recent_.rbegin(); it != recent_.rend() && it->routed_ns >= since; ++it) {
    const Message& m = *it->m;
    if (arrival_of(m, it->routed_ns) <= arrived_ns || m.expired(now)) continue;
    if (o.no_local && m.publisher == s->client_id) continue;
    if (!topic_matches(filter, m.topic)) continue;
    bool had = false;  // through another subscription (a shared one might have: not twice)
    for (const auto& [f, _] : s->subscriptions) {
      if (f == filter) continue;
      std::string_view inner = f;
      if (auto sh = parse_shared(f)) inner = sh->filter;
      if (topic_matches(inner, m.topic)) {
        had = true;
        break;
      }
    }
    if (!had) late->push_back(it->m);
  }
  std::reverse(late->begin() + static_cast<std::ptrdiff_t>(first), late->end());  // routed order
  return true;
}

bool Core::unsubscribe(const std::shared_ptr<Session>& s, const std::string& filter) {
  std::lock_guard lk(mu_);
  if (s->removed) return false;
  bool had = subs_.erase(filter, s->id);
  if (had) {
    store_->unsubscribed(*s, filter);
    count_binding_locked(filter, -1);
  }
  return had;
}

void Core::keep_im_subscription(const std::shared_ptr<Session>& s, const std::string& filter,
                                uint8_t qos) {
  std::lock_guard lk(mu_);
  if (s->removed) return;
  SubOptions o;
  o.qos = qos;
  store_->subscribed(*s, filter, o);
}

void Core::drop_im_subscription(const std::shared_ptr<Session>& s, const std::string& filter) {
  std::lock_guard lk(mu_);
  if (!s->removed && s->subscriptions.contains(filter)) store_->unsubscribed(*s, filter);
}

TopicNamespace::Subscriptions Core::im_subscriptions(const std::shared_ptr<Session>& s) {
  TopicNamespace::Subscriptions out;
  std::lock_guard lk(mu_);
  for (const auto& [filter, o] : s->subscriptions)
    if (in_im(filter)) out.emplace_back(filter, o.qos);
  return out;
}

bool Core::in_im(std::string_view t) const {
  if (im == nullptr) return im_prefix(t);
  if (im->owns(t)) return true;
  auto shared = parse_shared(t);
  return shared && im->owns(shared->filter);
}

void Core::taken_over_elsewhere(const std::string& client_id) {
  std::shared_ptr<ClientImpl> owner;
  std::shared_ptr<Link> link;
  {
    std::lock_guard lk(mu_);
    auto s = store_->find(client_id);
    if (!s) return;
    {
      std::lock_guard slk(s->mu);
      owner = s->owner.lock();
      link = s->owner_link;
      s->owner.reset();
      s->owner_key = nullptr;
      s->owner_link.reset();
    }
    remove_session_locked(*s, /*keep_record=*/true);
  }
  if (owner && link) {
    std::weak_ptr<ClientImpl> w = owner;
    link->post([w] {
      if (auto c = w.lock()) c->taken_over();
    });
  }
}

bool Core::load_needed(const std::string& client_id, bool clean_start) {
  // A clean start needs no session back, but in a cluster the read tells whether another node
  // holds the client id connected (then its connection is taken over).
  if (!store_->persistent() || (clean_start && !clustered_)) return false;
  std::lock_guard lk(mu_);
  return store_->find(client_id) == nullptr;
}

std::optional<StoredSession> Core::load_session(const std::string& client_id) {
  return store_->load(client_id);
}

std::vector<MessagePtr> Core::retained_for(std::string_view filter,
                                           const std::vector<MessagePtr>& late) {
  std::vector<MessagePtr> out;
  std::vector<std::string> expired;
  auto now = Clock::now();
  std::lock_guard lk(mu_);
  retained_.match(filter, [&](std::string_view topic, const MessagePtr& m) {
    if (m->expired(now)) {
      expired.emplace_back(topic);
    } else if (std::find(late.begin(), late.end(), m) == late.end()) {
      out.push_back(m);
    }
  });
  for (const auto& t : expired) retained_.erase(t);
  return out;
}

// --- routing ---

namespace {

// A message on the bus: [1: format][2: publisher's length][publisher][an MQTT 5 PUBLISH]. The
// PUBLISH carries what subscribers get (its properties, the expiry left); its packet id means
// nothing.
constexpr char kBusFormat = 1;

std::optional<std::string> bus_encode(const Message& m, Clock::time_point now) {
  Publish p;
  p.topic = m.topic;
  p.qos = m.qos;
  p.retain = m.retain;
  p.packet_id = m.qos > 0 ? 1 : 0;
  p.properties = m.properties;
  if (m.expires_at) {
    auto left = std::chrono::ceil<std::chrono::seconds>(*m.expires_at - now).count();
    if (left <= 0) return std::nullopt;
    p.properties.message_expiry_interval = static_cast<uint32_t>(left);
  }
  std::string out;
  out.push_back(kBusFormat);
  const auto n = static_cast<uint16_t>(std::min<std::size_t>(m.publisher.size(), 0xFFFF));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n & 0xFF));
  out.append(m.publisher, 0, n);
  out += encode_publish(p, m.payload, Version::v5);
  return out;
}

}  // namespace

void Core::from_bus(std::string_view bytes) {
  if (bytes.size() < 3 || bytes[0] != kBusFormat) {
    count_dropped();
    return;
  }
  const std::size_t n = (static_cast<std::size_t>(static_cast<uint8_t>(bytes[1])) << 8) |
                        static_cast<uint8_t>(bytes[2]);
  if (bytes.size() < 3 + n) {
    count_dropped();
    return;
  }
  auto dec = Decoder::for_client(Version::v5);
  dec.feed(bytes.substr(3 + n));
  auto packet = dec.next();
  auto* p = packet ? std::get_if<Publish>(&*packet) : nullptr;
  if (p == nullptr || !valid_topic_name(p->topic)) {
    count_dropped();
    return;
  }
  metrics.mqtt_bus_in_total.add();
  auto m = std::make_shared<Message>();
  m->topic = std::move(p->topic);
  m->payload = std::move(p->payload);
  m->qos = p->qos;
  m->retain = p->retain;
  m->properties = std::move(p->properties);
  m->publisher = std::string(bytes.substr(3, n));
  if (auto e = m->properties.message_expiry_interval) {
    m->expires_at = Clock::now() + std::chrono::seconds(*e);
    m->properties.message_expiry_interval.reset();
  }
  publish(m, true);
}

std::size_t Core::publish(const MessagePtr& m, bool from_bus) {
  struct Target {
    std::shared_ptr<Session> s;
    uint8_t qos = 0;
    bool retain_as_published = false;
    std::vector<uint32_t> ids;
  };
  std::vector<Target> targets;
  {
    std::lock_guard lk(mu_);
    remember_locked(m);
    if (m->retain) {
      if (m->payload.empty()) {
        retained_.erase(m->topic);
      } else if (retained_.size() >= opts.max_retained && retained_.find(m->topic) == nullptr) {
        count_dropped();  // over max_retained: delivered, not retained
      } else {
        retained_.set(m->topic, m);
      }
    }
    // One delivery per session for overlapping subscriptions: the highest QoS and every
    // subscription identifier (MQTT 5 section 3.3.4).
    std::unordered_map<SubscriberId, std::size_t> index;
    subs_.match(
        m->topic,
        [&](SubscriberId id, const SubOptions& o, std::string_view) {
          auto it = by_id_.find(id);
          if (it == by_id_.end()) return;
          if (o.no_local && it->second->client_id == m->publisher) return;
          auto [slot, fresh] = index.try_emplace(id, targets.size());
          if (fresh) targets.push_back(Target{it->second});
          Target& t = targets[slot->second];
          t.qos = std::max(t.qos, o.qos);
          t.retain_as_published = t.retain_as_published || o.retain_as_published;
          if (o.subscription_id != 0) t.ids.push_back(o.subscription_id);
        },
        [&](std::string_view group, std::string_view filter, std::span<const SubEntry> members) {
          // One member per message, round robin, preferring members that are connected.
          std::string key;
          key.reserve(group.size() + filter.size() + 1);
          key.append(group).push_back('\0');
          key.append(filter);
          uint64_t start = share_next_[key]++;
          const SubEntry* pick = nullptr;
          std::shared_ptr<Session> pick_s;
          for (std::size_t k = 0; k < members.size(); ++k) {
            const SubEntry& e = members[(start + k) % members.size()];
            auto it = by_id_.find(e.id);
            if (it == by_id_.end()) continue;
            if (pick == nullptr || (!pick_s->online && it->second->online)) {
              pick = &e;
              pick_s = it->second;
            }
            if (pick_s->online) break;
          }
          if (pick == nullptr) return;
          Target t{pick_s, pick->options.qos, pick->options.retain_as_published, {}};
          if (pick->options.subscription_id != 0) t.ids.push_back(pick->options.subscription_id);
          targets.push_back(std::move(t));
        });
  }
  std::size_t delivered = 0;
  for (auto& t : targets) {
    AclClient who;
    if (t.s->username) who.username = *t.s->username;
    who.client_id = t.s->client_id;
    if (!acl.can_read(who, m->topic)) {
      count_refused();
      continue;
    }
    Outgoing o;
    o.msg = m;
    o.qos = std::min(m->qos, t.qos);
    o.retain = t.retain_as_published && m->retain;
    o.subscription_ids = std::move(t.ids);
    deliver(t.s, std::move(o));
    ++delivered;
  }
  // The other nodes' subscribers (a retained message: every node, which keeps it too).
  if (clustered_ && !from_bus && crosses_nodes(m->topic)) {
    if (auto bytes = bus_encode(*m, Clock::now())) {
      svc.bus().publish_transient(m->retain ? std::string(kRetainKey) : routing_key(m->topic),
                                  std::make_shared<const std::string>(std::move(*bytes)));
      metrics.mqtt_bus_out_total.add();
      ++delivered;
    }
  }
  return delivered;
}

void Core::deliver(const std::shared_ptr<Session>& s, Outgoing o) {
  std::shared_ptr<Link> link;
  std::weak_ptr<ClientImpl> owner;
  std::function<void()> dropped_ack;
  bool kick = false;
  const uint8_t qos = o.qos;
  {
    std::lock_guard lk(s->mu);
    link = s->owner_link;
    owner = s->owner;
    if (qos > 0) {
      if (s->removed || !store_->enqueue(*s, std::move(o))) {
        count_dropped();  // the session's queue is full (max_queued_messages)
        return;
      }
      if (link && !s->kick_pending) {
        s->kick_pending = true;
        kick = true;
      }
    } else if (!link) {
      dropped_ack = std::move(o.acked);  // QoS 0 is not queued for an offline session
    }
  }
  if (dropped_ack) dropped_ack();
  if (qos == 0) {
    if (!link) return;
    link->post([owner, o = std::move(o)]() mutable {
      if (auto c = owner.lock()) c->deliver_now(std::move(o));
    });
  } else if (kick) {
    link->post([owner] {
      if (auto c = owner.lock()) c->pump();
    });
  }
}

std::optional<Outgoing> Core::dequeue(Session& s) {
  return store_->dequeue(s);
}

// --- clients, timers ---

void Core::add_client(const std::shared_ptr<ClientImpl>& c, std::shared_ptr<Link> link) {
  std::lock_guard lk(clients_mu_);
  clients_[c.get()] = {c, std::move(link)};
}

std::vector<std::pair<std::weak_ptr<ClientImpl>, std::shared_ptr<Link>>> Core::clients() {
  std::lock_guard lk(clients_mu_);
  std::vector<std::pair<std::weak_ptr<ClientImpl>, std::shared_ptr<Link>>> out;
  out.reserve(clients_.size());
  for (const auto& [k, v] : clients_) out.push_back(v);
  return out;
}

void Core::remove_client(const ClientImpl* c) {
  std::lock_guard lk(clients_mu_);
  clients_.erase(c);
}

void Core::unschedule_locked(Session& s) {
  if (s.deadline) {
    deadlines_.erase(*s.deadline);
    s.deadline.reset();
  }
}

void Core::schedule_locked(const std::shared_ptr<Session>& s) {
  unschedule_locked(*s);
  std::optional<Clock::time_point> next = s->expires_at;
  if (s->will && s->will_at && (!next || *s->will_at < *next)) next = s->will_at;
  if (next) s->deadline = deadlines_.emplace(*next, s);
}

void Core::expire_due(Clock::time_point now, std::vector<MessagePtr>& wills) {
  std::lock_guard lk(mu_);
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    auto s = deadlines_.begin()->second;
    unschedule_locked(*s);
    if (s->online || s->removed) continue;
    if (s->will && s->will_at && *s->will_at <= now) {
      wills.push_back(will_message(s->client_id, *s->will));
      store_->set_will(*s, std::nullopt);
      s->will_at.reset();
    }
    if (s->expires_at && *s->expires_at <= now) {
      if (s->will) {
        wills.push_back(will_message(s->client_id, *s->will));  // the session ends first
        store_->set_will(*s, std::nullopt);
      }
      remove_session_locked(*s);
    } else {
      schedule_locked(s);
    }
  }
}

void Core::timer_loop() {
  auto next_sys = Clock::now();
  std::unique_lock lk(timer_mu_);
  while (!timer_stop_) {
    lk.unlock();
    auto now = Clock::now();
    std::vector<MessagePtr> wills;
    expire_due(now, wills);
    for (auto& w : wills) publish(w);
    if (opts.sys_interval_ms > 0 && now >= next_sys) {
      publish_sys();
      next_sys = now + std::chrono::milliseconds(opts.sys_interval_ms);
    }
    lk.lock();
    // Wills and expiries are due on whole seconds; a tenth of one is precise enough.
    timer_cv_.wait_for(lk, std::chrono::milliseconds(100), [this] { return timer_stop_; });
  }
}

void Core::start() {
  if (clustered_) {
    svc.bus().bind_transient(std::string(kRetainKey), true);
    svc.bus().bind_transient(std::string(kTakeoverPrefix) + opts.node_id, true);
  }
  std::lock_guard lk(timer_mu_);
  if (timer_.joinable()) return;
  timer_stop_ = false;
  timer_ = std::thread([this] { timer_loop(); });
}

void Core::stop() {
  {
    std::lock_guard lk(timer_mu_);
    timer_stop_ = true;
  }
  timer_cv_.notify_all();
  if (timer_.joinable() && timer_.get_id() != std::this_thread::get_id()) timer_.join();
  store_->close();  // what is pending is written; sessions stay as they were
}

// --- Broker ---

struct Broker::State {
  std::shared_ptr<Core> core;
};

Broker::Broker(BrokerOptions opts, Service& svc, Metrics& metrics, Acl acl, TopicNamespace* im)
    : st_(std::make_unique<State>()) {
  st_->core = std::make_shared<Core>(std::move(opts), svc, metrics, std::move(acl), im);
}

Broker::~Broker() {
  stop();
}

std::shared_ptr<Client> Broker::accept(std::shared_ptr<Link> link) {
  auto c = std::make_shared<ClientImpl>(st_->core, link);
  st_->core->add_client(c, std::move(link));
  return c;
}

void Broker::start() {
  st_->core->start();
}

void Broker::from_bus(std::string_view key, std::string_view bytes) {
  if (key.starts_with(kTakeoverPrefix)) return st_->core->taken_over_elsewhere(std::string(bytes));
  st_->core->from_bus(bytes);
}

void Broker::stop() {
  auto& core = *st_->core;
  core.stopping = true;
  core.stop();
  for (auto& [w, l] : core.clients()) {
    l->post([w] {
      if (auto c = w.lock()) c->shutdown();
    });
  }
}

}  // namespace converge::mqtt
