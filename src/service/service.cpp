#include "service/service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>

#include "base/clock.hpp"
#include "base/utf8.hpp"
#include "proto/codec.hpp"
#include "service/cluster.hpp"
#include "service/writer.hpp"

namespace converge {

namespace fs = std::filesystem;

Service::Service(ServiceOptions opts, Store& store, Bus& bus, Hub& hub, Metrics& metrics)
    : opts_(std::move(opts)),
      store_(store),
      bus_(bus),
      hub_(hub),
      metrics_(metrics),
      pool_(opts_.work_threads),
      auth_pool_(std::max(1u, opts_.auth_threads), "auth"),
      presence_(bus_.node_id()),
      login_user_limit_(opts_.rate_login_user),
      login_address_limit_(opts_.rate_login_address),
      register_address_limit_(opts_.rate_register_address),
      conversations_limit_(opts_.rate_conversations_user),
      members_limit_(opts_.rate_members_user),
      requests_limit_(opts_.rate_requests_user) {}

Service::~Service() {
  stop();
}

Status Service::start() {
  std::error_code ec;
  fs::create_directories(fs::path(opts_.files_dir) / "tmp", ec);
  if (ec)
    return make_error(Errc::internal, "cannot create " + opts_.files_dir + ": " + ec.message());
  auto s = store_.open_session();
  if (!s) return s.error();
  // A hash of a password nobody knows, at the node's cost: a login for an unknown user verifies
  // against it, so that it takes as long as a wrong password for a known one.
  dummy_hash_ = password_hash(random_hex(16), opts_.password_cost);
  if (dummy_hash_.empty()) return make_error(Errc::internal, "password hashing failed");
  writer_ =
      std::make_unique<Writer>(std::move(s.value()), bus_, hub_, metrics_, opts_.store_batch_max);
  if (opts_.push.post) {
    push_ = std::make_unique<PushWorker>(opts_.push, *this, metrics_);
    writer_->set_push(push_.get());
  }
  writer_->start();
  if (push_) push_->start();
  // Expired tokens are dead weight; drop them once per start. Requests past their time read as
  // expired whenever they are read; here their rows say so too.
  return write([](StoreSession& st) -> Status {
    if (auto s = st.delete_expired_tokens(now_ms()); !s) return s;
    auto n = st.requests_expire(now_ms());
    if (!n) return n.error();
    return ok_status();
  });
}

void Service::stop() {
  presence_.stop();
  // Before the writer, which it records through. What it has not decided is in the outbox.
  if (push_) push_->stop();
  auth_pool_.stop();
  pool_.stop();
  if (writer_) writer_->stop();
}

void Service::forget_node(const std::string& node_id) {
  presence_.forget_node(node_id);
  if (push_) push_->adopt(node_id);
  if (node_lost_) run_blocking([this, node_id] { node_lost_(node_id); });
}

Result<std::vector<PushRecord>> Service::push_dead_letters(const AuthContext& who, int64_t limit) {
  if (!who.is_admin) return make_error(Errc::forbidden, "admin only");
  auto s = lease();
  return s->push_dead_list(std::clamp<int64_t>(limit, 1, 1000));
}

Error Service::limited(int64_t wait_ms, std::string what) {
  metrics_.rate_limited_total.add();
  return rate_limited_error(wait_ms, std::move(what));
}

Service::SessionLease Service::lease() {
  {
    std::lock_guard lk(sessions_mu_);
    if (!idle_sessions_.empty()) {
      auto s = std::move(idle_sessions_.back());
      idle_sessions_.pop_back();
      return SessionLease(this, std::move(s));
    }
  }
  auto s = store_.open_session();
  if (!s) throw std::runtime_error("cannot open a store session: " + s.error().message);
  return SessionLease(this, std::move(s.value()));
}

Status Service::write(std::function<Status(StoreSession&)> fn) {
  std::promise<Status> p;
  auto f = p.get_future();
  writer_->submit(Writer::FnJob{std::move(fn), [&p](Status s) { p.set_value(std::move(s)); }, 0});
  return f.get();
}

// ---------------------------------------------------------------------------------- accounts

Result<User> Service::register_user(std::string user_id, std::string name,
                                    const std::string& password, bool by_admin, bool make_admin,
                                    const std::string& source) {
  if (!opts_.open_registration && !by_admin)
    return make_error(Errc::forbidden, "registration is admin-only on this node");
  if (user_id.empty()) user_id = "u" + random_hex(6);
  if (!valid_user_id(user_id))
    return make_error(Errc::bad_request,
                      "user_id must be 1-64 of a-z 0-9 _ . @ -, starting with a letter or a digit "
                      "(and not \"all\")");
  user_id = canonical_user_id(user_id);
  if (name.empty()) name = user_id;
  if (name.size() > 128) return make_error(Errc::bad_request, "name is longer than 128 bytes");
  if (!valid_display_name(name))
    return make_error(Errc::bad_request, "name has control or bidirectional-override characters");
  if (password.empty() || password.size() > 1024)
    return make_error(Errc::bad_request, "password must be 1-1024 bytes");
  if (!by_admin)
    if (int64_t w = register_address_limit_.take(source, now_ms()); w > 0)
      return limited(w, "too many registrations from this address");
  auto hash = password_hash(password, opts_.password_cost);
  if (hash.empty()) return make_error(Errc::internal, "password hashing failed");
  User u{user_id, name, make_admin, now_ms()};
  if (auto st = write([&](StoreSession& s) { return s.create_user(u, hash); }); !st)
    return st.error();
  (void)notify_admins(proto::serialize(boost::json::object{{"event", "user_registered"},
                                                           {"user_id", u.id},
                                                           {"name", u.name},
                                                           {"by_admin", by_admin},
                                                           {"admin", make_admin}}));
  return u;
}

Result<LoginResult> Service::login(const std::string& user_id_in, const std::string& password,
                                   const std::string& device_id, const std::string& source) {
  if (!valid_user_id(user_id_in)) return make_error(Errc::bad_request, "bad user_id");
  if (!valid_device_id(device_id))
    return make_error(Errc::bad_request, "device_id must be 1-64 of A-Z a-z 0-9 _ . @ -");
  const std::string user_id = canonical_user_id(user_id_in);
  // Throttled before any work: per user id (guessing one account's password, from anywhere)
  // and per address (trying many accounts from one place). Unknown ids are throttled alike.
  const int64_t now = now_ms();
  if (int64_t w = std::max(login_user_limit_.wait_ms(user_id, now),
                           login_address_limit_.wait_ms(source, now));
      w > 0)
    return limited(w, "too many failed logins; try again later");
  auto rec = [&] {
    auto s = lease();
    return s->find_user(user_id);
  }();
  if (!rec) return rec.error();
  // Same answer, and the same argon2id work, for an unknown user and a wrong password: neither
  // the answer nor its timing discloses which ids exist.
  const std::string& hash = rec.value() ? rec.value()->password_hash : dummy_hash_;
  if (!password_verify(hash, password) || !rec.value()) {
    login_user_limit_.charge(user_id, now_ms());
    login_address_limit_.charge(source, now_ms());
    return make_error(Errc::unauthorized, "wrong user_id or password");
  }
  LoginResult out;
  out.token = random_hex(32);
  out.auth.user_id = user_id;
  out.auth.user_name = rec.value()->user.name;
  out.auth.device_id = device_id;
  out.auth.is_admin = rec.value()->user.is_admin;
  out.auth.expires_at_ms = now_ms() + opts_.token_ttl_ms;
  out.auth.token_hash = sha256_hex(out.token);
  if (auto st = write([&](StoreSession& s) {
        return s.insert_token(out.auth.token_hash, user_id, device_id, out.auth.expires_at_ms);
      });
      !st)
    return st.error();
  return out;
}

Result<AuthContext> Service::authenticate(std::string_view token) {
  if (token.empty() || token.size() > 256) return make_error(Errc::unauthorized, "missing token");
  auto digest = sha256_hex(token);
  auto s = lease();
  auto a = s->find_token(digest, now_ms());
  if (!a) return a.error();
  if (!a.value()) return make_error(Errc::unauthorized, "invalid or expired token");
  a.value()->token_hash = std::move(digest);
  return std::move(*a.value());
}

bool Service::token_alive(const std::string& token_hash) {
  auto s = lease();
  auto a = s->find_token(token_hash, now_ms());
  return a && a.value().has_value();
}

void Service::publish_revoke(const std::string& user_id, std::string token_hash,
                             std::string keep_hash) {
  auto n = std::make_shared<Notice>();
  n->kind = Notice::Kind::revoke;
  n->user_id = user_id;
  n->token_hash = std::move(token_hash);
  n->keep_token_hash = std::move(keep_hash);
  bus_.publish(std::shared_ptr<const Notice>(std::move(n)));
}

Status Service::logout(const AuthContext& who) {
  if (auto st = write([&](StoreSession& s) { return s.delete_token(who.token_hash); }); !st)
    return st;
  publish_revoke(who.user_id, who.token_hash, "");
  return ok_status();
}

Result<int64_t> Service::logout_all(const AuthContext& who) {
  int64_t n = 0;
  auto st = write([&](StoreSession& s) -> Status {
    auto r = s.delete_user_tokens(who.user_id, "");
    if (!r) return r.error();
    n = r.value();
    return ok_status();
  });
  if (!st) return st.error();
  publish_revoke(who.user_id, "", "");
  return n;
}

Result<int64_t> Service::change_password(const AuthContext& who, const std::string& old_password,
                                         const std::string& new_password,
                                         const std::string& source) {
  if (new_password.empty() || new_password.size() > 1024)
    return make_error(Errc::bad_request, "new_password must be 1-1024 bytes");
  const int64_t now = now_ms();
  if (int64_t w = std::max(login_user_limit_.wait_ms(who.user_id, now),
                           login_address_limit_.wait_ms(source, now));
      w > 0)
    return limited(w, "too many failed logins; try again later");
  auto rec = [&] {
    auto s = lease();
    return s->find_user(who.user_id);
  }();
  if (!rec) return rec.error();
  if (!rec.value()) return make_error(Errc::unauthorized, "no such user");
  if (!password_verify(rec.value()->password_hash, old_password)) {
    login_user_limit_.charge(who.user_id, now_ms());
    login_address_limit_.charge(source, now_ms());
    return make_error(Errc::unauthorized, "wrong old_password");
  }
  auto hash = password_hash(new_password, opts_.password_cost);
  if (hash.empty()) return make_error(Errc::internal, "password hashing failed");
  int64_t n = 0;
  auto st = write([&](StoreSession& s) -> Status {
    if (auto r = s.set_password(who.user_id, hash); !r) return r;
    auto r = s.delete_user_tokens(who.user_id, who.token_hash);
    if (!r) return r.error();
    n = r.value();
    return ok_status();
  });
  if (!st) return st.error();
  publish_revoke(who.user_id, "", who.token_hash);
  return n;
}

Result<std::vector<User>> Service::list_users(const AuthContext& who) {
  if (!who.is_admin) return make_error(Errc::forbidden, "admin only");
  auto s = lease();
  return s->list_users(10000);
}

Result<User> Service::find_user(const std::string& user_id) {
  if (!valid_user_id(user_id)) return make_error(Errc::not_found, "no such user");
  auto s = lease();
  auto rec = s->find_user(canonical_user_id(user_id));
  if (!rec) return rec.error();
  if (!rec.value()) return make_error(Errc::not_found, "no such user");
  return std::move(rec.value()->user);
}

Status Service::ensure_admin(const std::string& user_id_in, const std::string& password) {
  if (!valid_user_id(user_id_in)) return make_error(Errc::bad_request, "bad admin user id");
  const std::string user_id = canonical_user_id(user_id_in);
  auto hash = password_hash(password, opts_.password_cost);
  if (hash.empty()) return make_error(Errc::internal, "password hashing failed");
  return write([&](StoreSession& s) -> Status {
    auto rec = s.find_user(user_id);
    if (!rec) return rec.error();
    if (!rec.value()) return s.create_user(User{user_id, user_id, true, now_ms()}, hash);
    if (auto st = s.set_password(user_id, hash); !st) return st;
    return s.set_admin(user_id, true);
  });
}

// ----------------------------------------------------------------------------- conversations

Result<std::vector<Conversation>> Service::list_conversations(const AuthContext& who) {
  auto s = lease();
  return s->list_conversations(who.user_id);
}

Result<std::vector<Conversation>> Service::list_conversations_page(const AuthContext& who,
                                                                   ConversationId after_id,
                                                                   int64_t limit) {
  auto s = lease();
  return s->list_conversations_page(who.user_id, after_id,
                                    std::clamp<int64_t>(limit, 1, opts_.sync_page_max));
}

Status Service::check_group_cap(StoreSession& s, const std::vector<std::string>& users) {
  for (auto& u : users) {
    auto n = s.count_groups(u);
    if (!n) return n.error();
    if (n.value() >= opts_.max_groups_per_user)
      return make_error(Errc::forbidden,
                        u + " is in too many groups already (max_groups_per_user " +
                            std::to_string(opts_.max_groups_per_user) + ")");
  }
  return ok_status();
}

Result<Conversation> Service::load_member_view(StoreSession& s, const AuthContext& who,
                                               ConversationId id) {
  auto c = s.get_conversation(id);
  if (!c) return c.error();
  if (!c.value()) return make_error(Errc::not_found, "no such conversation");
  auto& members = c.value()->members;
  bool member = std::any_of(members.begin(), members.end(),
                            [&](const Member& m) { return m.user_id == who.user_id; });
  if (!member) return make_error(Errc::forbidden, "not a member of this conversation");
  return std::move(*c.value());
}

void Service::announce(const Conversation& c, const char* change, const std::string& also,
                       std::string event_json) {
  auto n = std::make_shared<Notice>();
  n->kind = Notice::Kind::conversation;
  n->change = change;
  n->event_json = std::move(event_json);
  n->conversation = c;
  for (auto& m : c.members) n->user_ids.push_back(m.user_id);
  if (!also.empty()) n->user_ids.push_back(also);
  bus_.publish(std::shared_ptr<const Notice>(std::move(n)));
}

Result<Conversation> Service::get_conversation(const AuthContext& who, ConversationId id) {
  auto s = lease();
  return load_member_view(*s, who, id);
}

Result<std::pair<Conversation, bool>> Service::create_conversation(const AuthContext& who,
                                                                   CreateConversationRequest req) {
  std::set<std::string> users;
  for (auto& m : req.members) users.insert(canonical_user_id(m));
  users.insert(who.user_id);
  if (req.name.size() > 256) return make_error(Errc::bad_request, "name is longer than 256 bytes");
  if (!valid_display_name(req.name))
    return make_error(Errc::bad_request, "name has control or bidirectional-override characters");
  std::string direct_key;
  if (req.type == ConversationType::direct) {
    if (users.size() != 2)
      return make_error(Errc::bad_request, "a direct conversation has exactly two members");
    direct_key = *users.begin() + "|" + *users.rbegin();
  } else if (users.size() < 2) {
    return make_error(Errc::bad_request, "a group needs at least two members");
  }
  {
    auto s = lease();
    std::vector<User> peers;
    for (auto& u : users) {
      auto rec = s->find_user(u);
      if (!rec) return rec.error();
      if (!rec.value()) return make_error(Errc::not_found, "no such user: " + u);
      if (u != who.user_id) peers.push_back(rec.value()->user);
    }
    if (!direct_key.empty()) {
      // An existing pair is answered as it is: asking again costs nothing.
      auto existing = s->find_direct(direct_key);
      if (!existing) return existing.error();
      if (existing.value()) {
        auto out = load_member_view(*s, who, *existing.value());
        if (!out) return out.error();
        return std::make_pair(std::move(out.value()), false);
      }
      // A new direct conversation: the other one may take them from friends only.
      for (auto& p : peers)
        if (p.direct_policy == DirectPolicy::friends) {
          auto f = s->are_friends(who.user_id, p.id);
          if (!f) return f.error();
          if (!f.value())
            return make_error(Errc::forbidden, p.id + " takes direct messages from friends only");
        }
    }
  }
  const int64_t now = now_ms();
  if (int64_t w = conversations_limit_.take(who.user_id, now); w > 0)
    return limited(w, "too many conversations created; try again later");
  if (req.type == ConversationType::group)
    if (int64_t w = members_limit_.take(who.user_id, now, static_cast<double>(users.size() - 1));
        w > 0)
      return limited(w, "too many members added; try again later");

  Conversation c;
  c.type = req.type;
  c.name = req.name;
  c.owner = who.user_id;
  c.created_at_ms = now;
  for (auto& u : users) c.members.push_back(Member{u, false});
  ConversationId id = 0;
  bool created = false;
  auto st = write([&](StoreSession& s) -> Status {
    if (!direct_key.empty()) {
      auto existing = s.find_direct(direct_key);
      if (!existing) return existing.error();
      if (existing.value()) {
        id = *existing.value();
        return ok_status();
      }
    } else if (auto cap = check_group_cap(s, {users.begin(), users.end()}); !cap) {
      return cap;
    }
    auto r = s.create_conversation(c, direct_key);
    if (!r) return r.error();
    id = r.value();
    created = true;
    return ok_status();
  });
  if (!st) return st.error();
  auto s = lease();
  auto out = load_member_view(*s, who, id);
  if (!out) return out.error();
  if (created) {
    bus_.declare_conversation(id);
    announce(out.value(), "created");
  }
  return std::make_pair(std::move(out.value()), created);
}

Status Service::set_muted(const AuthContext& who, ConversationId id, bool muted) {
  {
    auto s = lease();
    if (auto c = load_member_view(*s, who, id); !c) return c.error();
  }
  return write([&](StoreSession& s) { return s.set_muted(id, who.user_id, muted); });
}

// ---------------------------------------------------------------------------------- messages

void Service::send(const AuthContext& who, SendRequest req,
                   std::function<void(Result<SendAck>)> done, int shard) {
  metrics_.messages_in_total.add();
  writer_->submit(Writer::SendJob{who, std::move(req), std::move(done), shard});
}

Result<std::vector<Message>> Service::history(const AuthContext& who, ConversationId id,
                                              Seq after_seq, Seq before_seq, int64_t limit) {
  if (limit <= 0) limit = opts_.sync_page_default;
  limit = std::min(limit, opts_.sync_page_max);
  auto s = lease();
  if (auto c = load_member_view(*s, who, id); !c) return c.error();
  if (before_seq > 0) return s->messages_before(id, before_seq, limit);
  return s->messages_after(id, after_seq, limit);
}

bool Service::probe_store() {
  bool ok = false;
  try {
    auto s = lease();
    ok = s->find_user("").ok();  // no such user: a round trip and nothing more
  } catch (const std::exception&) {
    ok = false;  // no session could be opened
  }
  if (ok != store_ok_.exchange(ok))
    spdlog::warn(ok ? "store: reachable again" : "store: unreachable");
  return ok;
}

std::vector<NodeInfo> Service::nodes() const {
  if (cluster_) return cluster_->nodes();
  return {NodeInfo{bus_.node_id(), 0, now_ms(), hub_.sinks(), {}, 0, true}};
}

int64_t Service::device_online(const AuthContext& who, const std::string& protocol) {
  if (cluster_) cluster_->device_online(who.user_id, who.is_admin);
  return presence_.attach(who.user_id, who.device_id, protocol);
}

void Service::device_offline(const AuthContext& who, int64_t conn_id) {
  presence_.detach(conn_id);
  if (cluster_) cluster_->device_offline(who.user_id, who.is_admin);
}

Result<std::vector<PresenceRow>> Service::connections_of(std::span<const std::string> users,
                                                         StoreSession& s) {
  std::vector<PresenceRow> rows = presence_.local(users);
  if (!cluster_ || users.empty()) return rows;
  auto remote = s.presence_of(users);
  if (!remote) return remote.error();
  // Other nodes' rows, of nodes alive: a row of a node whose heartbeat has not been heard is
  // kept while it is younger than the node timeout (that node may have just started).
  std::set<std::string> alive;
  for (auto& n : cluster_->nodes()) alive.insert(n.id);
  const int64_t young = now_ms() - cluster_->timeout_ms();
  for (auto& r : remote.value())
    if (r.node_id != bus_.node_id() && (alive.count(r.node_id) || r.since_ms >= young))
      rows.push_back(std::move(r));
  return rows;
}

Result<std::set<std::string>> Service::online_anywhere(std::span<const std::string> users) {
  auto rows = connections_of(users, *lease());
  if (!rows) return rows.error();
  std::set<std::string> out;
  for (auto& r : rows.value()) out.insert(r.user_id);
  return out;
}

Result<std::vector<Service::UserPresence>> Service::presence(
    const AuthContext& who, const std::vector<std::string>& asked) {
  if (asked.size() > kPresenceQueryMax)
    return make_error(Errc::bad_request,
                      "at most " + std::to_string(kPresenceQueryMax) + " users at a time");
  std::vector<std::string> users;
  for (auto& u : asked) {
    auto id = canonical_user_id(u);
    if (!valid_user_id(id)) return make_error(Errc::bad_request, "invalid user id");
    if (std::find(users.begin(), users.end(), id) == users.end()) users.push_back(std::move(id));
  }
  auto s = lease();
  // Who may be seen: oneself, and those one shares a conversation with (all, for an admin).
  std::vector<std::string> visible;
  if (who.is_admin) {
    visible = users;
  } else {
    std::vector<std::string> others;
    for (auto& u : users)
      if (u != who.user_id) others.push_back(u);
    auto shared = s->shared_members(who.user_id, others);
    if (!shared) return shared.error();
    for (auto& u : users)
      if (u == who.user_id ||
          std::find(shared.value().begin(), shared.value().end(), u) != shared.value().end())
        visible.push_back(u);
  }
  auto rows_r = connections_of(visible, *s);
  if (!rows_r) return rows_r.error();
  auto& rows = rows_r.value();
  std::vector<UserPresence> out;
  for (auto& u : visible) {
    UserPresence p;
    p.user_id = u;
    p.detailed = who.is_admin || u == who.user_id;
    for (auto& r : rows)
      if (r.user_id == u) p.connections.push_back(r);
    std::sort(p.connections.begin(), p.connections.end(), [](auto& a, auto& b) {
      return std::tie(a.since_ms, a.node_id, a.conn_id) <
             std::tie(b.since_ms, b.node_id, b.conn_id);
    });
    out.push_back(std::move(p));
  }
  return out;
}

Result<Conversation> Service::conversation_members(ConversationId id) {
  auto s = lease();
  auto c = s->get_conversation(id);
  if (!c) return c.error();
  if (!c.value()) return make_error(Errc::not_found, "no such conversation");
  return std::move(*c.value());
}

Result<std::vector<Message>> Service::messages_after(ConversationId id, Seq after, int64_t limit) {
  auto s = lease();
  return s->messages_after(id, after, std::min(limit, opts_.sync_page_max));
}

namespace {
// Offline pages continue from "<conversation_id>:<seq>".
bool parse_cursor(const std::string& c, ConversationId& conv, Seq& seq) {
  auto colon = c.find(':');
  if (colon == std::string::npos) return false;
  auto a = c.data(), m = c.data() + colon, e = c.data() + c.size();
  auto r1 = std::from_chars(a, m, conv);
  auto r2 = std::from_chars(m + 1, e, seq);
  return r1.ec == std::errc{} && r1.ptr == m && r2.ec == std::errc{} && r2.ptr == e && conv > 0 &&
         seq >= 0;
}
}  // namespace

Result<SyncPage> Service::sync(const AuthContext& who, const SyncRequest& req) {
  ConversationId from_conv = 0;
  Seq from_seq = 0;
  if (!req.cursor.empty() && !parse_cursor(req.cursor, from_conv, from_seq))
    return make_error(Errc::bad_request, "bad cursor");
  int64_t limit =
      req.limit > 0 ? std::min(req.limit, opts_.sync_page_max) : opts_.sync_page_default;

  auto s = lease();
  auto convs = s->list_conversations(who.user_id);
  if (!convs) return convs.error();
  auto cursors = s->cursors(who.user_id, who.device_id);
  if (!cursors) return cursors.error();
  std::unordered_map<ConversationId, Seq> acked;
  for (auto& [c, cur] : cursors.value()) acked[c] = cur.acked;

  SyncPage page;
  std::vector<std::pair<ConversationId, Seq>> fetched;  // what this page hands the device
  int64_t page_bytes = 0;  // message bodies so far: a page also stops at sync_page_bytes
  auto full = [&] {
    return static_cast<int64_t>(page.messages.size()) >= limit ||
           page_bytes >= opts_.sync_page_bytes;
  };
  for (auto& c : convs.value()) {
    if (c.id < from_conv) continue;
    Seq after = acked.count(c.id) ? acked[c.id] : 0;
    if (c.id == from_conv) after = std::max(after, from_seq);
    if (page.more) break;
    if (full()) {
      if (c.last_seq > after) page.more = true;
      continue;
    }
    if (c.last_seq <= after) {
      fetched.emplace_back(c.id, c.last_seq);
      continue;
    }
    int64_t room = limit - static_cast<int64_t>(page.messages.size());
    auto msgs = s->messages_after(c.id, after, room + 1);
    if (!msgs) return msgs.error();
    auto& v = msgs.value();
    std::size_t keep = 0;
    while (keep < v.size() && static_cast<int64_t>(keep) < room &&
           ((page.messages.empty() && keep == 0) || page_bytes < opts_.sync_page_bytes)) {
      page_bytes += static_cast<int64_t>(v[keep].body.size()) + 256;  // + envelope estimate
      ++keep;
    }
    if (keep < v.size()) {
      v.resize(keep);
      page.more = true;
    }
    if (!v.empty()) {
      Seq top = page.more ? v.back().seq : std::max(v.back().seq, c.last_seq);
      fetched.emplace_back(c.id, top);
    }
    std::move(v.begin(), v.end(), std::back_inserter(page.messages));
  }
  if (page.more && !page.messages.empty())
    page.next_cursor = std::to_string(page.messages.back().conversation_id) + ":" +
                       std::to_string(page.messages.back().seq);
  if (!fetched.empty()) {
    // Committed before the page is returned: a WebSocket the device opens next starts its live
    // stream from here, so nothing stored in between can fall through.
    auto st = write([&](StoreSession& w) -> Status {
      for (auto& [c, seq] : fetched)
        if (auto r = w.advance_fetched(who.user_id, who.device_id, c, seq); !r) return r;
      return ok_status();
    });
    if (!st) return st.error();
  }
  return page;
}

Result<SeqMap> Service::heartbeat(const AuthContext& who, const SeqMap& seqs) {
  if (seqs.empty()) return SeqMap{};
  SeqMap effective;
  {
    auto s = lease();
    auto convs = s->list_conversations(who.user_id);
    if (!convs) return convs.error();
    std::unordered_map<ConversationId, Seq> last;
    for (auto& c : convs.value()) last[c.id] = c.last_seq;
    for (auto& [c, seq] : seqs) {
      auto it = last.find(c);
      if (it == last.end())
        return make_error(Errc::forbidden, "not a member of conversation " + std::to_string(c));
      effective[c] = std::min(seq, it->second);  // a cursor never points past the last message
    }
  }
  auto st = write([&](StoreSession& s) -> Status {
    for (auto& [c, seq] : effective)
      if (auto r = s.advance_acked(who.user_id, who.device_id, c, seq); !r) return r;
    return ok_status();
  });
  if (!st) return st.error();
  return effective;
}

Status Service::advance_delivered(const AuthContext& who, const SeqMap& seqs) {
  if (seqs.empty()) return ok_status();
  return write([&](StoreSession& s) -> Status {
    for (auto& [c, seq] : seqs)
      if (auto r = s.advance_acked(who.user_id, who.device_id, c, seq); !r) return r;
    return ok_status();
  });
}

Result<SeqMap> Service::stream_positions(const AuthContext& who) {
  auto s = lease();
  auto cursors = s->cursors(who.user_id, who.device_id);
  if (!cursors) return cursors.error();
  SeqMap out;
  for (auto& [c, cur] : cursors.value()) out[c] = std::max(cur.acked, cur.fetched);
  return out;
}

// ------------------------------------------------------------------------------------- files

namespace {
// `name` is valid UTF-8. Directory parts go; so do control characters and bidirectional
// overrides (which make "invoice\u202Efdp.exe" display as "invoiceexe.pdf").
std::string clean_file_name(std::string name) {
  auto slash = name.find_last_of("/\\");
  if (slash != std::string::npos) name = name.substr(slash + 1);
  std::string out;
  std::size_t i = 0;
  while (i < name.size()) {
    auto c = static_cast<unsigned char>(name[i]);
    std::size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    std::string_view ch(name.data() + i, std::min(len, name.size() - i));
    i += ch.size();
    if (!valid_display_name(ch)) continue;
    out += ch;
  }
  if (out.empty() || out == "." || out == "..") out = "file";
  return std::string(utf8_truncate(out, 255));
}

bool valid_mime(const std::string& m) {
  if (m.empty() || m.size() > 127) return false;
  auto slash = m.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == m.size()) return false;
  for (char c : m)
    if (!(std::isalnum(static_cast<unsigned char>(c)) ||
          std::string_view("/+-.=;_ ").find(c) != std::string_view::npos))
      return false;
  return true;
}
}  // namespace

Result<FileMeta> Service::store_file(const AuthContext& who, std::string name, std::string mime,
                                     std::string_view bytes) {
  if (static_cast<int64_t>(bytes.size()) > opts_.max_file_bytes)
    return make_error(Errc::too_large,
                      "file is larger than " + std::to_string(opts_.max_file_bytes) + " bytes");
  if (bytes.empty()) return make_error(Errc::bad_request, "empty file");
  if (!utf8_valid(name)) return make_error(Errc::bad_request, "name must be UTF-8");
  if (mime.empty()) mime = "application/octet-stream";
  if (!valid_mime(mime)) return make_error(Errc::bad_request, "bad Content-Type");
  FileMeta f;
  f.id = random_hex(16);
  f.name = clean_file_name(std::move(name));
  f.mime = std::move(mime);
  f.size = static_cast<int64_t>(bytes.size());
  f.uploader = who.user_id;
  f.created_at_ms = now_ms();
  Sha256 h;
  h.update(bytes);
  f.sha256 = h.final_hex();

  // Content-addressed: identical uploads share one blob. Written to tmp, then renamed into place.
  fs::path blob = fs::path(opts_.files_dir) / f.sha256.substr(0, 2) / f.sha256;
  std::error_code ec;
  if (!fs::exists(blob, ec)) {
    fs::create_directories(blob.parent_path(), ec);
    fs::path tmp = fs::path(opts_.files_dir) / "tmp" / (f.id + ".part");
    {
      std::ofstream out(tmp, std::ios::binary);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      out.flush();
      if (!out) return make_error(Errc::internal, "cannot write file blob");
    }
    fs::rename(tmp, blob, ec);
    if (ec) return make_error(Errc::internal, "cannot store file blob: " + ec.message());
  }
  if (auto st = write([&](StoreSession& s) { return s.insert_file(f); }); !st) return st.error();
  return f;
}

Result<OpenedFile> Service::open_file(const AuthContext& who, const std::string& file_id) {
  auto s = lease();
  auto f = s->get_file(file_id);
  if (!f) return f.error();
  if (!f.value()) return make_error(Errc::not_found, "no such file");
  auto ok = s->file_accessible(file_id, who.user_id);
  if (!ok) return ok.error();
  if (!ok.value()) return make_error(Errc::forbidden, "not shared with you");
  OpenedFile out;
  out.meta = std::move(*f.value());
  out.path = (fs::path(opts_.files_dir) / out.meta.sha256.substr(0, 2) / out.meta.sha256).string();
  return out;
}

// ------------------------------------------------------------------------------ notifications

Status Service::send_event(const AuthContext& who, const std::string& user_id_in,
                           std::string payload_json) {
  if (!who.is_admin) return make_error(Errc::forbidden, "admin only");
  const std::string user_id = canonical_user_id(user_id_in);
  {
    auto s = lease();
    auto rec = s->find_user(user_id);
    if (!rec) return rec.error();
    if (!rec.value()) return make_error(Errc::not_found, "no such user: " + user_id);
  }
  auto n = std::make_shared<Notice>();
  n->kind = Notice::Kind::event;
  n->user_id = user_id;
  n->payload_json = std::move(payload_json);
  bus_.publish(std::shared_ptr<const Notice>(std::move(n)));
  return ok_status();
}

Status Service::notify_admins(std::string payload_json, const std::string& only) {
  std::vector<std::string> to;
  {
    auto s = lease();
    auto admins = s->list_admins();
    if (!admins) return admins.error();
    for (auto& u : admins.value())
      if (only.empty() || u.id == only) to.push_back(u.id);
  }
  if (!only.empty() && to.empty()) return make_error(Errc::not_found, "no such admin: " + only);
  for (auto& id : to) {
    auto n = std::make_shared<Notice>();
    n->kind = Notice::Kind::admin;
    n->user_id = id;
    n->payload_json = payload_json;
    bus_.publish(std::shared_ptr<const Notice>(std::move(n)));
  }
  return ok_status();
}

Status Service::admin_notify(const AuthContext& who, const std::string& to_in,
                             std::string payload_json) {
  if (!who.is_admin) return make_error(Errc::forbidden, "admin only");
  if (!to_in.empty() && !valid_user_id(to_in)) return make_error(Errc::bad_request, "bad user id");
  return notify_admins(std::move(payload_json), to_in.empty() ? "" : canonical_user_id(to_in));
}

Status Service::broadcast(const AuthContext& who, std::string payload_json) {
  if (!who.is_admin) return make_error(Errc::forbidden, "admin only");
  auto n = std::make_shared<Notice>();
  n->kind = Notice::Kind::broadcast;
  n->payload_json = std::move(payload_json);
  bus_.publish(std::shared_ptr<const Notice>(std::move(n)));
  return ok_status();
}

}  // namespace converge

namespace converge {

namespace {

bool digits(const std::string& v) {
  return !v.empty() && v.size() <= 10 &&
         std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A host as the backend services take it: an IPv4 address or a DNS name (RFC 1123 labels).
bool host_name(const std::string& v) {
  if (v.empty() || v.size() > 253) return false;
  std::size_t label = 0;
  for (char c : v) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-') || ++label > 63) return false;
  }
  return label > 0;
}

}  // namespace

Status Service::backend_config(const AuthContext& who, const std::string& service,
                               const std::map<std::string, std::string>& fields) {
  if (!who.is_admin) return make_error(Errc::forbidden, "admin only");
  const bool media = service == "media";
  if (!media && service != "balance")
    return make_error(Errc::not_found, "no such backend service: " + service);
  // Seed 000's fields: required, then optional.
  std::vector<const char*> required = {"server_id",        "local_host1",   "http_listen_port",
                                       "rtsp_listen_port", "log_save_days", "log_level"};
  std::vector<const char*> optional = {"local_host2"};
  if (media) {
    required.push_back("rtc_tcp_listen_port");
    required.push_back("rtc_udp_listen_port");
  } else {
    optional.push_back("virtual_host1");
    optional.push_back("virtual_host2");
  }
  boost::json::object data;
  auto check = [&](const char* k, const std::string& v) -> Status {
    std::string key(k);
    bool ok = true;
    if (key == "server_id" || key == "log_save_days")
      ok = digits(v) && v != "0";
    else if (key.ends_with("_port"))
      ok = digits(v) && std::stol(v) >= 1 && std::stol(v) <= 65535;
    else if (key == "log_level")
      ok = v.size() == 1 && v[0] >= '1' && v[0] <= '5';
    else
      ok = host_name(v);
    if (!ok)
      return make_error(Errc::bad_request,
                        key + ": bad value " + std::string(utf8_truncate(v, 64)));
    data[key] = v;
    return ok_status();
  };
  for (auto* k : required) {
    auto it = fields.find(k);
    if (it == fields.end()) return make_error(Errc::bad_request, std::string(k) + " is required");
    if (auto st = check(k, it->second); !st) return st;
  }
  for (auto* k : optional)
    if (auto it = fields.find(k); it != fields.end())
      if (auto st = check(k, it->second); !st) return st;
  for (auto& [k, _] : fields)
    if (std::find_if(required.begin(), required.end(), [&](const char* r) { return k == r; }) ==
            required.end() &&
        std::find_if(optional.begin(), optional.end(), [&](const char* o) { return k == o; }) ==
            optional.end())
      return make_error(Errc::bad_request, "unknown field " + std::string(utf8_truncate(k, 64)));
  boost::json::object env{{"cmd", media ? "media_config" : "balance_config"},
                          {"data", std::move(data)}};
  return bus_.publish_backend(media ? BackendExchange::comm_gb : BackendExchange::base,
                              media ? "comm_gb" : "balance", proto::serialize(env));
}

Status Service::announce_start(const std::string& node_id) {
  boost::json::object env{
      {"cmd", "center_start"},
      {"data", boost::json::object{{"node_id", node_id}, {"started_at", now_ms()}}}};
  auto body = proto::serialize(env);
  auto a = bus_.publish_backend(BackendExchange::base, "balance", body);
  auto b = bus_.publish_backend(BackendExchange::comm_gb, "comm_gb", body);
  (void)notify_admins(proto::serialize(boost::json::object{
      {"event", "node_started"}, {"node_id", node_id}, {"started_at", now_ms()}}));
  return a ? b : a;
}

}  // namespace converge
