#include "gateway/mqtt/im_namespace.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "base/metrics.hpp"
#include "base/utf8.hpp"
#include "gateway/mqtt/topic.hpp"
#include "proto/codec.hpp"
#include "service/device_stream.hpp"
#include "service/hub.hpp"
#include "service/service.hpp"

namespace converge::mqtt {

namespace {

// MQTT 5 reason codes a PUBACK / SUBACK may carry here.
constexpr uint8_t kUnspecified = 0x80;
constexpr uint8_t kNotAuthorized = 0x87;
constexpr uint8_t kTopicInvalid = 0x90;
constexpr uint8_t kQuota = 0x97;
constexpr uint8_t kPayloadInvalid = 0x99;

uint8_t reason_for(const Error& e) {
  switch (e.code) {
    case Errc::unauthorized:
    case Errc::forbidden:
    case Errc::not_found:
      return kNotAuthorized;
    case Errc::bad_json:
    case Errc::bad_request:
    case Errc::too_large:
      return kPayloadInvalid;
    case Errc::rate_limited:
      return kQuota;
    default:
      return kUnspecified;
  }
}

std::vector<std::string_view> levels(std::string_view t) {
  std::vector<std::string_view> out;
  for (;;) {
    auto slash = t.find('/');
    out.push_back(t.substr(0, slash));
    if (slash == std::string_view::npos) return out;
    t.remove_prefix(slash + 1);
  }
}

std::optional<ConversationId> parse_id(std::string_view s) {
  ConversationId id = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
  if (ec != std::errc{} || p != s.data() + s.size() || id <= 0) return std::nullopt;
  return id;
}

struct Sub {
  std::string filter;
  uint8_t qos = 0;
};

}  // namespace

namespace {

struct ConvInfo {
  ConversationType type = ConversationType::group;
  std::string peer;  // direct: the other member
};

ConvInfo info_of(const Conversation& c, const std::string& self) {
  ConvInfo i;
  i.type = c.type;
  if (c.type == ConversationType::direct)
    for (auto& m : c.members)
      if (m.user_id != self) i.peer = m.user_id;
  return i;
}

}  // namespace

// One attached client. Its stream, conversations and cursors live on its hub shard's thread;
// its subscriptions are written on the client's thread and read on the shard's (sub_mu_).
class ImNamespace::Device final : public DeviceSink, public std::enable_shared_from_this<Device> {
 public:
  Device(Service& svc, Hub& hub, Metrics& metrics, AuthContext auth, Deliver deliver, int shard,
         const Subscriptions& subs, std::function<void()> ready)
      : svc_(svc),
        hub_(hub),
        metrics_(metrics),
        auth_(std::move(auth)),
        deliver_(std::move(deliver)),
        shard_(shard),
        ready_(std::move(ready)) {
    for (const auto& [filter, qos] : subs) subs_.push_back(Sub{filter, qos});
  }

  const std::string& sink_user_id() const override { return auth_.user_id; }
  // The connection this device is attached for (its ClientInfo): a connection that closes
  // after another took its client id over must not detach the newer one.
  const ClientInfo* owner = nullptr;
  const AuthContext& auth() const { return auth_; }

  void start() {
    auto self = shared_from_this();
    // The stream's callbacks run on the shard while the device holds it (close() drops it there).
    stream_ = DeviceStream::create(
        svc_,
        [hub = &hub_, shard = shard_](std::function<void()> fn) {
          hub->post(shard, std::move(fn));
        },
        [this](const std::shared_ptr<const Delivery>& d) { emit(d); },
        [this] { spdlog::warn("mqtt: {} fell too far behind", auth_.device_id); });
    hub_.post(shard_, [self] {
      if (self->closed_) return;
      self->hub_.attach(self->shard_, self.get());
      self->attached_ = true;
      self->svc_.run_blocking([self] { self->load(); });
    });
  }

  // On the work pool: bound on the bus, then positions and conversations (as a WebSocket).
  void load() {
    presence_id_ = svc_.device_online(auth_, "mqtt");
    online_.store(true);
    if (closed_.load() && online_.exchange(false)) svc_.device_offline(auth_, presence_id_);
    auto pos = svc_.stream_positions(auth_);
    auto convs = svc_.list_conversations(auth_);
    std::map<ConversationId, ConvInfo> infos;
    SeqMap last;
    if (convs)
      for (auto& c : convs.value()) {
        last[c.id] = c.last_seq;
        infos[c.id] = info_of(c, auth_.user_id);
      }
    auto self = shared_from_this();
    hub_.post(shard_, [self, pos = std::move(pos), last = std::move(last),
                       infos = std::move(infos)]() mutable {
      if (self->closed_) return;
      self->convs_ = std::move(infos);
      // Positions read after the bindings: whatever is stored from here on reaches the device.
      // The broker's CONNACK goes first, then what the stream emits.
      if (self->ready_) std::exchange(self->ready_, nullptr)();
      self->stream_->start(pos ? pos.value() : SeqMap{}, last);
    });
  }

  void close() {
    closed_.store(true);
    auto self = shared_from_this();
    hub_.post(shard_, [self] {
      if (self->attached_) self->hub_.detach(self->shard_, self.get());
      self->attached_ = false;
      if (self->stream_) self->stream_->close();
      self->stream_.reset();
      self->flush_cursors();
    });
    if (online_.exchange(false)) svc_.device_offline(auth_, presence_id_);
  }

  // --- subscriptions (client thread) ---
  void add_sub(const std::string& filter, uint8_t qos) {
    std::lock_guard lk(sub_mu_);
    for (auto& s : subs_)
      if (s.filter == filter) {
        s.qos = qos;
        return;
      }
    subs_.push_back(Sub{filter, qos});
  }
  void remove_sub(const std::string& filter) {
    std::lock_guard lk(sub_mu_);
    std::erase_if(subs_, [&](const Sub& s) { return s.filter == filter; });
  }

  // --- DeviceSink (shard thread) ---
  void deliver(const std::shared_ptr<const Delivery>& d) override {
    if (stream_) stream_->on_delivery(d);
  }

  void notify(const std::shared_ptr<const Notice>& n) override {
    if (n->kind == Notice::Kind::event && !n->event_cmd.empty()) return notify_request(*n);
    if (n->kind != Notice::Kind::conversation || !stream_) return;
    const auto& c = n->conversation;
    bool member = std::any_of(c.members.begin(), c.members.end(),
                              [&](const Member& m) { return m.user_id == auth_.user_id; });
    if (member) {
      convs_[c.id] = info_of(c, auth_.user_id);
      if (n->change == "created" || n->change == "member_added") stream_->join(c.id, c.last_seq);
    } else {
      convs_.erase(c.id);
      stream_->leave(c.id);
    }
  }

  void resync() override {
    if (!stream_) return;
    auto self = shared_from_this();
    svc_.run_blocking([self] {
      auto convs = self->svc_.list_conversations(self->auth_);
      if (!convs) return;
      SeqMap last;
      for (auto& c : convs.value()) last[c.id] = c.last_seq;
      self->hub_.post(self->shard_, [self, last = std::move(last)] {
        if (self->stream_) self->stream_->catch_up(last);
      });
    });
  }

 private:
  // A request made or decided (DESIGN.md section 8), on seed 002's topic for it, to this
  // device's matching subscriptions: live only, QoS 0 or 1 as subscribed, no cursor.
  void notify_request(const Notice& n) {
    auto o = proto::parse_object(n.payload_json);
    if (!o) return;
    auto field = [&](const char* k) -> std::string {
      auto* v = o->if_contains(k);
      return v && v->is_string() ? std::string(v->as_string()) : std::string();
    };
    const std::string user = field("user_id"), from = field("from_id"),
                      conv = field("conversation_id");
    std::string topic;
    if (n.event_cmd == "application")
      topic = "group/" + conv + "/application/" + user;
    else if (n.event_cmd == "invitation")
      topic = "group/" + conv + "/invitation/" + user + "/from/" + from;
    else if (n.event_cmd == "friend_request")  // in the inbox of whoever is told
      topic = auth_.user_id == from ? "user/" + from + "/application/" + user
                                    : "user/" + user + "/application/" + from;
    if (topic.empty() || topic.find("//") != std::string::npos) return;
    int qos = -1;
    {
      std::lock_guard lk(sub_mu_);
      for (auto& sub : subs_)
        if (topic_matches(sub.filter, topic)) qos = std::max<int>(qos, sub.qos);
    }
    if (qos < 0) return;
    Publish p;
    p.topic = std::move(topic);
    p.payload = n.payload_json;
    p.qos = static_cast<uint8_t>(qos);
    metrics_.deliveries_total.add();
    deliver_(std::move(p), [] {});
  }

  // The topic a message reaches this device on; empty: none (its own direct messages).
  std::string topic_for(const Message& m) {
    auto it = convs_.find(m.conversation_id);
    if (it == convs_.end()) return {};
    if (it->second.type == ConversationType::direct) {
      if (m.publisher_id == auth_.user_id) return {};
      return "user/" + auth_.user_id + "/inbox/" + m.publisher_id;
    }
    return "group/" + std::to_string(m.conversation_id) + "/inbox/" + m.publisher_id;
  }

  void emit(const std::shared_ptr<const Delivery>& d) {
    const Message& m = d->msg;
    const std::string topic = topic_for(m);
    int qos = -1;
    if (!topic.empty()) {
      std::lock_guard lk(sub_mu_);
      for (auto& s : subs_)
        if (topic_matches(s.filter, topic)) qos = std::max<int>(qos, s.qos);
    }
    auto& c = cursors_[m.conversation_id];
    c.emitted = std::max(c.emitted, m.seq);
    if (qos < 0) return;  // not subscribed: nothing to deliver
    Publish p;
    p.topic = topic;
    p.payload = *d->wire.get(WireCache::json_data,
                             [&] { return proto::serialize(proto::message_json(m)); });
    p.qos = static_cast<uint8_t>(qos);
    metrics_.deliveries_total.add();
    // QoS 1: acknowledged by the client; QoS 0: sent (the broker runs it at once).
    if (qos > 0) c.inflight.insert(m.seq);
    std::weak_ptr<Device> weak = weak_from_this();
    auto acked = [weak, conv = m.conversation_id, seq = m.seq] {
      if (auto self = weak.lock())
        self->hub_.post(self->shard_, [self, conv, seq] { self->on_acked(conv, seq); });
    };
    deliver_(std::move(p), std::move(acked));
  }

  // A QoS 1 delivery acknowledged: the acked cursor goes as far as every delivery before it is
  // acknowledged too (a device back with its session resumes after it).
  void on_acked(ConversationId conv, Seq seq) {
    auto& c = cursors_[conv];
    c.inflight.erase(seq);
    Seq upto = c.inflight.empty() ? c.emitted : *c.inflight.begin() - 1;
    if (upto > c.written) {
      c.written = upto;
      pending_[conv] = upto;
      if (!flushing_) flush_cursors();
    }
  }

  // One write at a time; what is acked meanwhile goes in the next.
  void flush_cursors() {
    if (pending_.empty() || flushing_) return;
    flushing_ = true;
    auto self = shared_from_this();
    svc_.run_blocking([self, seqs = std::move(pending_)] {
      (void)self->svc_.advance_delivered(self->auth_, seqs);
      self->hub_.post(self->shard_, [self] {
        self->flushing_ = false;
        self->flush_cursors();
      });
    });
    pending_.clear();
  }

  struct Cursor {
    Seq emitted = 0;  // last seq handed to the stream's emit
    Seq written = 0;  // last acked position written
    std::set<Seq> inflight;
  };

  Service& svc_;
  Hub& hub_;
  Metrics& metrics_;
  const AuthContext auth_;
  const Deliver deliver_;
  const int shard_;
  std::function<void()> ready_;  // shard thread
  std::shared_ptr<DeviceStream> stream_;
  std::map<ConversationId, ConvInfo> convs_;  // shard thread
  std::map<ConversationId, Cursor> cursors_;  // shard thread
  SeqMap pending_;                            // shard thread
  bool flushing_ = false;                     // shard thread
  bool attached_ = false;                     // shard thread
  std::atomic<bool> closed_{false};
  std::atomic<bool> online_{false};
  int64_t presence_id_ = 0;
  std::mutex sub_mu_;  // subs_: written on the client's thread, read on the shard's
  std::vector<Sub> subs_;
};

ImNamespace::ImNamespace(Service& svc, Hub& hub, Metrics& metrics, std::size_t max_body_bytes)
    : svc_(svc), hub_(hub), metrics_(metrics), max_body_bytes_(max_body_bytes) {}

ImNamespace::~ImNamespace() {
  std::lock_guard lk(mu_);
  for (auto& [_, d] : devices_) d->close();
  devices_.clear();
}

bool ImNamespace::owns(std::string_view t) const {
  return t.starts_with("user/") || t.starts_with("group/") || t == "user" || t == "group";
}

std::shared_ptr<ImNamespace::Device> ImNamespace::find(const ClientInfo& c) {
  if (!c.auth) return nullptr;
  std::lock_guard lk(mu_);
  auto it = devices_.find(c.client_id);
  // Only the connection the device is attached for: one that lost its client id to a newer
  // connection (perhaps another user's) acts on nothing.
  return it == devices_.end() || it->second->owner != &c ? nullptr : it->second;
}

void ImNamespace::attach(const ClientInfo& c, Subscriptions subscriptions, Deliver deliver,
                         std::function<void()> ready) {
  if (!c.auth) return ready();  // anonymous clients have no IM namespace
  AuthContext a = *c.auth;
  a.device_id = c.client_id;  // the device's cursors are its client id's
  const int shard = hub_.shard_count() > 0
                        ? static_cast<int>(std::hash<std::string>{}(c.client_id) %
                                           static_cast<std::size_t>(hub_.shard_count()))
                        : 0;
  std::shared_ptr<Device> old;
  std::shared_ptr<Device> d;
  {
    std::lock_guard lk(mu_);
    d = std::make_shared<Device>(svc_, hub_, metrics_, std::move(a), std::move(deliver), shard,
                                 subscriptions, std::move(ready));
    d->owner = &c;
    auto& slot = devices_[c.client_id];
    old = std::move(slot);
    slot = d;
  }
  if (old) old->close();
  d->start();
}

void ImNamespace::detach(const ClientInfo& c) {
  std::shared_ptr<Device> d;
  {
    std::lock_guard lk(mu_);
    auto it = devices_.find(c.client_id);
    if (it == devices_.end() || it->second->owner != &c) return;
    d = std::move(it->second);
    devices_.erase(it);
  }
  d->close();
}

uint8_t ImNamespace::subscribe(const ClientInfo& c, const std::string& filter, uint8_t qos) {
  auto d = find(c);
  if (!d) return kNotAuthorized;
  auto lv = levels(filter);
  const std::string& self = d->auth().user_id;
  bool ok = false;
  if (lv.size() >= 2 && lv[0] == "user") {
    ok = lv[1] == self;  // only one's own user/<self>/...
  } else if (lv.size() == 4 && lv[0] == "group" && lv[2] == "application") {
    // One's own applications (not a member yet), or every application of a group one owns or
    // administers.
    if (lv[3] == self && (lv[1] == "+" || parse_id(lv[1]))) {
      ok = true;
    } else if (auto id = parse_id(lv[1])) {
      auto conv = svc_.get_conversation(d->auth(), *id);
      if (conv && conv.value().type == ConversationType::group)
        for (auto& m : conv.value().members)
          if (m.user_id == self) ok = self == conv.value().owner || m.role == Role::admin;
    }
  } else if (lv.size() == 6 && lv[0] == "group" && lv[2] == "invitation" && lv[4] == "from") {
    // Invitations to oneself, or made by oneself, in any group.
    ok = (lv[1] == "+" || parse_id(lv[1])) && (lv[3] == self || lv[5] == self);
  } else if (lv.size() >= 2 && lv[0] == "group") {
    // A group named literally, that the user is in (a store read: the broker calls this on the
    // client's thread, once per SUBSCRIBE).
    if (auto id = parse_id(lv[1])) {
      auto conv = svc_.get_conversation(d->auth(), *id);
      ok = conv && conv.value().type == ConversationType::group;
    }
  }
  if (!ok) {
    metrics_.mqtt_refused_total.add();
    return kNotAuthorized;
  }
  const uint8_t granted = std::min<uint8_t>(qos, 1);  // IM deliveries are QoS 0 or 1
  d->add_sub(filter, granted);
  return granted;
}

void ImNamespace::unsubscribe(const ClientInfo& c, const std::string& filter) {
  if (auto d = find(c)) d->remove_sub(filter);
}

void ImNamespace::publish(const ClientInfo& c, Publish p, std::function<void(uint8_t)> done) {
  auto d = find(c);
  if (!d) return done(kNotAuthorized);
  const AuthContext& who = d->auth();
  auto lv = levels(p.topic);
  if ((lv.size() == 4 && lv[2] == "application" && (lv[0] == "user" || lv[0] == "group")) ||
      (lv.size() == 6 && lv[0] == "group" && lv[2] == "invitation" && lv[4] == "from"))
    return publish_request(who, lv, p.payload, std::move(done));
  // user/<to>/inbox/<self> or group/<gid>/inbox/<self>: a message, published as oneself.
  if (lv.size() != 4 || lv[2] != "inbox" || (lv[0] != "user" && lv[0] != "group"))
    return done(kTopicInvalid);
  if (canonical_user_id(lv[3]) != who.user_id) {
    metrics_.mqtt_refused_total.add();
    return done(kNotAuthorized);
  }
  // The payload: the send fields as JSON, or plain text.
  SendRequest req;
  const std::string& body = p.payload;
  auto first = body.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && body[first] == '{') {
    auto o = proto::parse_object(body);
    if (!o) return done(kPayloadInvalid);
    o.value()["conversation_id"] = "1";  // replaced below; parse_send wants one
    auto r = proto::parse_send(o.value(), max_body_bytes_);
    if (!r) return done(reason_for(r.error()));
    req = std::move(r.value());
  } else {
    if (!utf8_valid(body) || body.empty() || body.size() > max_body_bytes_)
      return done(kPayloadInvalid);
    req.type = MessageType::text;
    req.body = body;
  }
  auto send = [this, who, done](SendRequest r) {
    svc_.send(who, std::move(r),
              [done](Result<SendAck> a) { done(a ? uint8_t{0} : reason_for(a.error())); });
  };
  if (lv[0] == "group") {
    auto id = parse_id(lv[1]);
    if (!id) return done(kTopicInvalid);
    req.conversation_id = *id;
    return send(std::move(req));
  }
  // A direct message: the conversation with <to>, made on the first one (a store write: on the
  // work pool).
  std::string to = canonical_user_id(lv[1]);
  if (!valid_user_id(to) || to == who.user_id) return done(kTopicInvalid);
  svc_.run_blocking([this, who, to, req = std::move(req), done, send]() mutable {
    CreateConversationRequest cr;
    cr.type = ConversationType::direct;
    cr.members = {to};
    auto conv = svc_.create_conversation(who, cr);
    if (!conv) return done(reason_for(conv.error()));
    req.conversation_id = conv.value().first.id;
    send(std::move(req));
  });
}

// Seed 002's request topics (docs/protocol.md, MQTT): the publisher's place in the topic says
// whether this makes a request or decides one. The service call blocks: on the work pool.
void ImNamespace::publish_request(const AuthContext& who, const std::vector<std::string_view>& lv,
                                  const std::string& payload, std::function<void(uint8_t)> done) {
  auto refuse = [this, &done](uint8_t code) {
    metrics_.mqtt_refused_total.add();
    done(code);
  };
  // The payload: plain text, or {"text"?} / {"decision"}.
  std::string text;
  std::string decision;
  auto first = payload.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && payload[first] == '{') {
    auto o = proto::parse_object(payload);
    if (!o) return refuse(kPayloadInvalid);
    auto t = proto::get_string(o.value(), "text", false, 1024);
    auto dv = proto::get_string(o.value(), "decision", false, 16);
    if (!t || !dv) return refuse(kPayloadInvalid);
    text = std::move(t.value());
    decision = std::move(dv.value());
  } else {
    if (!utf8_valid(payload) || payload.size() > 1024) return refuse(kPayloadInvalid);
    text = payload;
  }
  RequestKind kind = RequestKind::application;
  ConversationId gid = 0;
  std::string user, from;  // the request's user_id and from_id as the topic names them
  if (lv[0] == "user") {
    kind = RequestKind::friend_request;
    user = canonical_user_id(lv[1]);
    from = canonical_user_id(lv[3]);
  } else {
    auto id = parse_id(lv[1]);
    if (!id) return refuse(kTopicInvalid);
    gid = *id;
    if (lv[2] == "application") {
      user = from = canonical_user_id(lv[3]);
    } else {
      kind = RequestKind::invitation;
      user = canonical_user_id(lv[3]);
      from = canonical_user_id(lv[5]);
    }
  }
  if (!valid_user_id(user) || !valid_user_id(from)) return refuse(kTopicInvalid);
  bool approve = false;
  if (!decision.empty()) {
    const char* yes = kind == RequestKind::application ? "approve" : "accept";
    if (decision != yes && decision != "decline") return refuse(kPayloadInvalid);
    approve = decision == yes;
    // Who decides: for applications the service checks the role; the others, the one asked.
    if (kind != RequestKind::application && who.user_id != user) return refuse(kNotAuthorized);
  } else {
    // Making one: as oneself only (the applicant, the inviter, the friend asking).
    if (who.user_id != from) return refuse(kNotAuthorized);
  }
  svc_.run_blocking([this, who, kind, gid, user, from, text = std::move(text), approve,
                     deciding = !decision.empty(), done = std::move(done)]() mutable {
    auto answer = [this, &done](const Error& e) {
      metrics_.mqtt_refused_total.add();
      done(reason_for(e));
    };
    if (deciding) {
      auto r = svc_.pending_request(kind, gid, user, from);
      if (!r) return answer(r.error());
      auto d = svc_.decide(who, kind, r->id, approve);
      if (!d) return answer(d.error());
      return done(0);
    }
    Result<Service::RequestResult> r =
        kind == RequestKind::application  ? svc_.apply(who, gid, std::move(text))
        : kind == RequestKind::invitation ? svc_.invite(who, gid, user, std::move(text))
                                          : svc_.request_friend(who, user, std::move(text));
    if (!r) return answer(r.error());
    done(0);
  });
}

}  // namespace converge::mqtt
