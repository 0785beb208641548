// Groups that run themselves (DESIGN.md section 8): roles and settings, membership changes,
// join applications, invitations, friend requests, the directory and direct_policy.
//
// Every check that depends on the group's state (roles, members, the member limit, whether a
// request is still pending) runs inside the writer's transaction, on the rows as they are
// there: two admins on two nodes deciding one application meet in request_decide's conditional
// update, and only one of them adds the member. Each change stores its system message in the
// same transaction (Writer::FnJob::system), so that every device learns it in seq order.
#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <future>
#include <set>

#include "base/clock.hpp"
#include "base/crypto.hpp"
#include "base/utf8.hpp"
#include "proto/codec.hpp"
#include "service/service.hpp"
#include "service/writer.hpp"

namespace converge {

namespace json = boost::json;

namespace {

constexpr std::size_t kMaxNoticeBytes = 4096;
constexpr std::size_t kMaxRequestTextBytes = 1024;
constexpr std::size_t kMaxNameBytes = 256;
constexpr int64_t kListMax = 500;  // requests one list answers

// Free text (a notice, a request's text): a display name that may also hold newlines and tabs.
bool valid_free_text(std::string_view s) {
  std::string flat(s);
  for (auto& c : flat)
    if (c == '\n' || c == '\t') c = ' ';
  return valid_display_name(flat);
}

Status check_text(std::string_view s, std::size_t max, const char* what) {
  if (s.size() > max)
    return make_error(Errc::too_large,
                      std::string(what) + " is longer than " + std::to_string(max) + " bytes");
  if (!valid_free_text(s))
    return make_error(Errc::bad_request,
                      std::string(what) + " has control or bidirectional-override characters");
  return ok_status();
}

const char* request_prefix(RequestKind k) {
  switch (k) {
    case RequestKind::application:
      return "ap_";
    case RequestKind::invitation:
      return "in_";
    case RequestKind::friend_request:
      return "fr_";
  }
  return "ap_";
}

// A request id as the node makes them: the kind's prefix and 32 lowercase hex digits.
bool valid_request_id(RequestKind k, std::string_view id) {
  std::string_view prefix = request_prefix(k);
  if (id.size() != prefix.size() + 32 || !id.starts_with(prefix)) return false;
  for (char c : id.substr(prefix.size()))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::optional<Role> role_in(const Conversation& c, const std::string& user) {
  if (user == c.owner) return Role::owner;
  for (auto& m : c.members)
    if (m.user_id == user) return m.role;
  return std::nullopt;
}

bool is_member(const Conversation& c, const std::string& user) {
  return role_in(c, user).has_value();
}

// Owner and admins: who decides applications and hears of them.
std::vector<std::string> deciders(const Conversation& c) {
  std::vector<std::string> out;
  for (auto& m : c.members)
    if (m.user_id == c.owner || m.role == Role::admin) out.push_back(m.user_id);
  return out;
}

std::string body_of(const AuthContext& who, const char* event, json::object fields) {
  json::object o;
  o["event"] = event;
  o["actor"] = who.user_id;
  for (auto& [k, v] : fields) o[k] = v;
  return json::serialize(o);
}

Result<Conversation> load_group(StoreSession& s, ConversationId id) {
  auto c = s.get_conversation(id);
  if (!c) return c.error();
  if (!c.value() || c.value()->type != ConversationType::group)
    return make_error(Errc::not_found, "no such group");
  return std::move(*c.value());
}

// The kind of error deciding an expired request gives; and the one a decision that found its
// request decided already uses inside the write to undo what it did (answered as the first
// decision's result, outside).
constexpr std::string_view kDecidedAlready = "decided already";

}  // namespace

Message Service::system_message(const AuthContext& who, ConversationId id, std::string body) {
  Message m;
  m.conversation_id = id;
  m.publisher_id = who.user_id;
  m.publisher_name = who.user_name;
  m.type = MessageType::system;
  m.body = std::move(body);
  return m;
}

Status Service::write_group(ConversationId id, std::function<Status(StoreSession&)> fn,
                            std::vector<Message>* system) {
  std::promise<Status> p;
  auto f = p.get_future();
  Writer::FnJob job;
  job.fn = std::move(fn);
  job.done = [&p](Status st) { p.set_value(std::move(st)); };
  job.invalidates = id;
  job.system = system;
  writer_->submit(std::move(job));
  return f.get();
}

void Service::announce_request(const Request& r, const std::vector<std::string>& users) {
  // Told once when made and once when decided: the place to count them.
  const auto k = static_cast<std::size_t>(r.kind);
  if (r.status == RequestStatus::pending)
    metrics_.requests_made_total[k].add();
  else if (r.status == RequestStatus::declined)
    metrics_.requests_declined_total[k].add();
  else
    metrics_.requests_approved_total[k].add();
  const std::string payload = proto::serialize(proto::request_json(r));
  std::set<std::string> told;
  for (auto& u : users) {
    if (u.empty() || !told.insert(u).second) continue;
    auto n = std::make_shared<Notice>();
    n->kind = Notice::Kind::event;
    n->event_cmd = std::string(request_kind_name(r.kind));
    n->user_id = u;
    n->payload_json = payload;
    bus_.publish(std::shared_ptr<const Notice>(std::move(n)));
  }
}

// The conversation as a member who just joined must see it: its last seq before the join's
// system message, so that their stream starts with it.
namespace {
Conversation before_seq(Conversation c, const std::vector<Message>& system) {
  if (!system.empty()) c.last_seq = std::min(c.last_seq, system.front().seq - 1);
  return c;
}
}  // namespace

// ------------------------------------------------------------------------- membership, roles

namespace {
// Inside a write: adds `users` (not members yet) to `c`, within the member limit, with the
// system message of `via`.
Status add_to_group(StoreSession& s, const Conversation& c, const std::vector<std::string>& users,
                    int64_t max_members, const AuthContext& actor, const char* via,
                    std::vector<Message>& system) {
  if (users.empty()) return ok_status();
  if (static_cast<int64_t>(c.members.size() + users.size()) > max_members)
    return make_error(Errc::forbidden,
                      "the group is full (max_group_members " + std::to_string(max_members) + ")");
  const int64_t now = now_ms();
  for (auto& u : users)
    if (auto st = s.add_member(c.id, u, now); !st) return st;
  json::array ids;
  for (auto& u : users) ids.emplace_back(u);
  system.push_back(Service::system_message(
      actor, c.id, body_of(actor, "member_added", {{"users", std::move(ids)}, {"via", via}})));
  return ok_status();
}
}  // namespace

Result<Conversation> Service::add_members(const AuthContext& who, ConversationId id,
                                          const std::vector<std::string>& users_in) {
  if (users_in.empty()) return make_error(Errc::bad_request, "no members to add");
  std::vector<std::string> users;  // folded, without repeats
  {
    auto s = lease();
    auto c = load_member_view(*s, who, id);
    if (!c) return c.error();
    if (c->type == ConversationType::direct)
      return make_error(Errc::bad_request, "a direct conversation's members are fixed");
    std::set<std::string> seen;
    for (auto& m : c->members) seen.insert(m.user_id);
    for (auto& raw : users_in) {
      auto u = canonical_user_id(raw);
      auto rec = s->find_user(u);
      if (!rec) return rec.error();
      if (!rec.value()) return make_error(Errc::not_found, "no such user: " + u);
      if (seen.insert(u).second) users.push_back(u);
    }
  }
  if (users.empty()) return get_conversation(who, id);  // all of them are in: nothing to do
  if (int64_t w = members_limit_.take(who.user_id, now_ms(), static_cast<double>(users.size()));
      w > 0)
    return limited(w, "too many members added; try again later");
  std::vector<Message> system;
  auto st = write_group(
      id,
      [&](StoreSession& s) -> Status {
        auto c = load_group(s, id);
        if (!c) return c.error();
        auto role = role_in(c.value(), who.user_id);
        if (!role) return make_error(Errc::forbidden, "not a member of this conversation");
        if (c->join_policy == JoinPolicy::invite_only && *role < Role::admin)
          return make_error(Errc::forbidden,
                            "in an invite_only group only the owner and admins add members");
        std::vector<std::string> fresh;
        for (auto& u : users)
          if (!is_member(c.value(), u)) fresh.push_back(u);
        users = std::move(fresh);
        if (auto cap = check_group_cap(s, users); !cap) return cap;
        return add_to_group(s, c.value(), users, opts_.max_group_members, who, "add", system);
      },
      &system);
  if (!st) return st.error();
  auto s = lease();
  auto out = load_member_view(*s, who, id);
  if (out && !users.empty())
    announce(before_seq(out.value(), system), "member_added", "",
             system.empty() ? "" : system.front().body);
  return out;
}

Result<Conversation> Service::remove_member(const AuthContext& who, ConversationId id,
                                            const std::string& user_id_in) {
  const std::string user_id = canonical_user_id(user_id_in);
  {
    auto s = lease();
    auto c = load_member_view(*s, who, id);
    if (!c) return c.error();
    if (c->type == ConversationType::direct)
      return make_error(Errc::bad_request, "a direct conversation's members are fixed");
  }
  std::vector<Message> system;
  Conversation after;
  auto st = write_group(
      id,
      [&](StoreSession& s) -> Status {
        auto c = load_group(s, id);
        if (!c) return c.error();
        auto mine = role_in(c.value(), who.user_id);
        if (!mine) return make_error(Errc::forbidden, "not a member of this conversation");
        auto theirs = role_in(c.value(), user_id);
        if (!theirs) return make_error(Errc::not_found, user_id + " is not a member");
        const bool leaving = user_id == who.user_id;
        if (!leaving) {
          // Not above one's own role: the owner removes anyone, an admin members; a site admin
          // anyone but the owner.
          bool may = *mine > *theirs || (who.is_admin && *theirs != Role::owner);
          if (!may)
            return make_error(Errc::forbidden,
                              *mine == Role::member
                                  ? "only the owner and admins remove other members"
                                  : "an admin removes members only, not admins or the owner");
        }
        if (auto st = s.remove_member(id, user_id); !st) return st;
        system.push_back(system_message(
            who, id,
            body_of(who, leaving ? "member_left" : "member_removed", {{"user_id", user_id}})));
        // An owner who leaves hands the group to the longest-standing admin, or member.
        std::string heir;
        if (*theirs == Role::owner) {
          for (auto& m : c->members)
            if (m.user_id != user_id && m.role == Role::admin) {
              heir = m.user_id;
              break;
            }
          if (heir.empty())
            for (auto& m : c->members)
              if (m.user_id != user_id) {
                heir = m.user_id;
                break;
              }
        }
        if (!heir.empty()) {
          if (auto st = s.set_owner(id, heir); !st) return st;
          system.push_back(system_message(
              who, id, body_of(who, "owner_changed", {{"user_id", heir}, {"previous", user_id}})));
        }
        return ok_status();
      },
      &system);
  if (!st) return st.error();
  {
    auto s = lease();
    auto c = s->get_conversation(id);
    if (!c) return c.error();
    if (c.value()) after = std::move(*c.value());
  }
  announce(after, "member_removed", user_id, system.empty() ? "" : system.front().body);
  if (system.size() > 1) announce(after, "owner_changed", "", system[1].body);  // the owner left
  return after;
}

Result<Conversation> Service::update_group(const AuthContext& who, ConversationId id,
                                           GroupUpdate u) {
  if (!u.name && !u.notice && !u.join_policy)
    return make_error(Errc::bad_request, "nothing to change: give name, notice or join_policy");
  if (u.name) {
    if (u.name->size() > kMaxNameBytes)
      return make_error(Errc::too_large, "name is longer than 256 bytes");
    if (!valid_display_name(*u.name))
      return make_error(Errc::bad_request, "name has control or bidirectional-override characters");
  }
  if (u.notice)
    if (auto st = check_text(*u.notice, kMaxNoticeBytes, "notice"); !st) return st.error();
  {
    auto s = lease();
    auto c = load_member_view(*s, who, id);
    if (!c) return c.error();
    if (c->type == ConversationType::direct)
      return make_error(Errc::bad_request, "a direct conversation has no settings");
  }
  std::vector<Message> system;
  std::string event;
  auto st = write_group(
      id,
      [&](StoreSession& s) -> Status {
        auto c = load_group(s, id);
        if (!c) return c.error();
        auto role = role_in(c.value(), who.user_id);
        if (!role) return make_error(Errc::forbidden, "not a member of this conversation");
        if (*role < Role::admin)
          return make_error(Errc::forbidden, "only the owner and admins change the settings");
        json::object changed;
        std::optional<std::string> name, notice;
        std::optional<JoinPolicy> policy;
        if (u.name && *u.name != c->name) changed["name"] = *(name = u.name);
        if (u.notice && *u.notice != c->notice) changed["notice"] = *(notice = u.notice);
        if (u.join_policy && *u.join_policy != c->join_policy) {
          policy = u.join_policy;
          changed["join_policy"] = join_policy_name(*policy);
        }
        if (changed.empty()) return ok_status();  // the same values: nothing stored
        if (auto st = s.update_conversation(id, name, notice, policy); !st) return st;
        event = body_of(who, "updated", std::move(changed));
        system.push_back(system_message(who, id, event));
        return ok_status();
      },
      &system);
  if (!st) return st.error();
  auto s = lease();
  auto out = load_member_view(*s, who, id);
  if (out && !event.empty()) announce(out.value(), "updated", "", event);
  return out;
}

Result<Conversation> Service::set_role(const AuthContext& who, ConversationId id,
                                       const std::string& user_id_in, Role role) {
  if (role == Role::owner)
    return make_error(Errc::bad_request, "role is admin or member; hand the group over instead");
  const std::string user_id = canonical_user_id(user_id_in);
  {
    auto s = lease();
    auto c = load_member_view(*s, who, id);
    if (!c) return c.error();
    if (c->type == ConversationType::direct)
      return make_error(Errc::bad_request, "a direct conversation has no roles");
  }
  std::vector<Message> system;
  std::string event;
  auto st = write_group(
      id,
      [&](StoreSession& s) -> Status {
        auto c = load_group(s, id);
        if (!c) return c.error();
        if (c->owner != who.user_id)
          return make_error(Errc::forbidden, "only the owner gives and takes roles");
        auto theirs = role_in(c.value(), user_id);
        if (!theirs) return make_error(Errc::not_found, user_id + " is not a member");
        if (*theirs == Role::owner)
          return make_error(Errc::bad_request,
                            "the owner's role is owner; hand the group over instead");
        if (*theirs == role) return ok_status();
        if (auto st = s.set_role(id, user_id, role); !st) return st;
        event = body_of(who, "role_changed", {{"user_id", user_id}, {"role", role_name(role)}});
        system.push_back(system_message(who, id, event));
        return ok_status();
      },
      &system);
  if (!st) return st.error();
  auto s = lease();
  auto out = load_member_view(*s, who, id);
  if (out && !event.empty()) announce(out.value(), "role_changed", "", event);
  return out;
}

Result<Conversation> Service::transfer_owner(const AuthContext& who, ConversationId id,
                                             const std::string& user_id_in) {
  const std::string user_id = canonical_user_id(user_id_in);
  {
    auto s = lease();
    auto c = load_member_view(*s, who, id);
    if (!c) return c.error();
    if (c->type == ConversationType::direct)
      return make_error(Errc::bad_request, "a direct conversation has no owner to hand over");
  }
  std::vector<Message> system;
  std::string event;
  auto st = write_group(
      id,
      [&](StoreSession& s) -> Status {
        auto c = load_group(s, id);
        if (!c) return c.error();
        if (c->owner != who.user_id)
          return make_error(Errc::forbidden, "only the owner hands the group over");
        if (!is_member(c.value(), user_id))
          return make_error(Errc::not_found, user_id + " is not a member");
        if (user_id == who.user_id) return ok_status();
        if (auto st = s.set_owner(id, user_id); !st) return st;
        if (auto st = s.set_role(id, who.user_id, Role::admin); !st) return st;
        event = body_of(who, "owner_changed", {{"user_id", user_id}, {"previous", who.user_id}});
        system.push_back(system_message(who, id, event));
        return ok_status();
      },
      &system);
  if (!st) return st.error();
  auto s = lease();
  auto out = load_member_view(*s, who, id);
  if (out && !event.empty()) announce(out.value(), "owner_changed", "", event);
  return out;
}

Result<Service::GroupSummary> Service::group_summary(const AuthContext& who, ConversationId id) {
  auto s = lease();
  auto c = load_group(*s, id);
  if (!c) return c.error();
  GroupSummary g;
  g.id = id;
  g.name = c->name;
  g.join_policy = c->join_policy;
  g.member_count = static_cast<int64_t>(c->members.size());
  g.member = is_member(c.value(), who.user_id);
  return g;
}

// ---------------------------------------------------------------------------------- requests

Result<Request> Service::new_request(RequestKind kind, ConversationId id,
                                     const std::string& user_id, const std::string& from_id,
                                     std::string text) {
  Request r;
  r.id = std::string(request_prefix(kind)) + random_hex(16);
  r.kind = kind;
  r.conversation_id = id;
  r.user_id = user_id;
  r.from_id = from_id;
  r.text = std::move(text);
  r.created_at_ms = now_ms();
  r.expires_at_ms = r.created_at_ms + opts_.request_ttl_ms;
  return r;
}

Result<Service::RequestResult> Service::apply(const AuthContext& who, ConversationId id,
                                              std::string text) {
  if (auto st = check_text(text, kMaxRequestTextBytes, "text"); !st) return st.error();
  if (int64_t w = requests_limit_.take(who.user_id, now_ms()); w > 0)
    return limited(w, "too many requests made; try again later");
  RequestResult out;
  std::vector<Message> system;
  std::vector<std::string> tell;
  auto fresh = new_request(RequestKind::application, id, who.user_id, who.user_id, text);
  if (!fresh) return fresh.error();
  auto st = write_group(
      id,
      [&](StoreSession& s) -> Status {
        auto c = load_group(s, id);
        if (!c) return c.error();
        if (is_member(c.value(), who.user_id))
          return make_error(Errc::conflict, "already a member of this group");
        if (c->join_policy == JoinPolicy::invite_only)
          return make_error(Errc::forbidden, "this group takes members by invitation only");
        if (static_cast<int64_t>(c->members.size()) >= opts_.max_group_members)
          return make_error(Errc::forbidden, "the group is full (max_group_members " +
                                                 std::to_string(opts_.max_group_members) + ")");
        tell = deciders(c.value());
        if (c->join_policy == JoinPolicy::open) {  // a member at once
          if (auto cap = check_group_cap(s, {who.user_id}); !cap) return cap;
          if (auto st = add_to_group(s, c.value(), {who.user_id}, opts_.max_group_members, who,
                                     "open", system);
              !st)
            return st;
          out.request = fresh.value();
          out.request.status = RequestStatus::approved;
          out.request.decided_by = who.user_id;
          out.request.decided_at_ms = out.request.created_at_ms;
          return s.request_insert(out.request);
        }
        auto pending = s.request_find_pending(RequestKind::application, id, who.user_id,
                                              who.user_id, now_ms());
        if (!pending) return pending.error();
        if (pending.value()) {
          out.request = std::move(*pending.value());
          return ok_status();
        }
        out.request = fresh.value();
        out.created = true;
        return s.request_insert(out.request);
      },
      &system);
  if (!st) return st.error();
  if (out.request.status == RequestStatus::approved) {
    auto s = lease();
    auto c = load_member_view(*s, who, id);
    if (c)
      announce(before_seq(c.value(), system), "member_added", "",
               system.empty() ? "" : system.front().body);
    out.conversation = c ? std::optional<Conversation>(std::move(c.value())) : std::nullopt;
  } else if (out.created) {
    announce_request(out.request, tell);
  }
  return out;
}

Result<Service::RequestResult> Service::invite(const AuthContext& who, ConversationId id,
                                               const std::string& user_id_in, std::string text) {
  if (!valid_user_id(user_id_in)) return make_error(Errc::bad_request, "bad user_id");
  const std::string user_id = canonical_user_id(user_id_in);
  if (user_id == who.user_id) return make_error(Errc::bad_request, "one does not invite oneself");
  if (auto st = check_text(text, kMaxRequestTextBytes, "text"); !st) return st.error();
  {
    auto s = lease();
    auto c = load_member_view(*s, who, id);
    if (!c) return c.error();
    if (c->type == ConversationType::direct)
      return make_error(Errc::bad_request, "a direct conversation takes no invitations");
    auto rec = s->find_user(user_id);
    if (!rec) return rec.error();
    if (!rec.value()) return make_error(Errc::not_found, "no such user: " + user_id);
  }
  if (int64_t w = requests_limit_.take(who.user_id, now_ms()); w > 0)
    return limited(w, "too many requests made; try again later");
  auto fresh = new_request(RequestKind::invitation, id, user_id, who.user_id, std::move(text));
  if (!fresh) return fresh.error();
  RequestResult out;
  auto st = write_group(
      id,
      [&](StoreSession& s) -> Status {
        auto c = load_group(s, id);
        if (!c) return c.error();
        auto role = role_in(c.value(), who.user_id);
        if (!role) return make_error(Errc::forbidden, "not a member of this conversation");
        if (c->join_policy == JoinPolicy::invite_only && *role < Role::admin)
          return make_error(Errc::forbidden,
                            "in an invite_only group only the owner and admins invite");
        if (is_member(c.value(), user_id))
          return make_error(Errc::conflict, user_id + " is a member already");
        auto pending =
            s.request_find_pending(RequestKind::invitation, id, user_id, who.user_id, now_ms());
        if (!pending) return pending.error();
        if (pending.value()) {
          out.request = std::move(*pending.value());
          return ok_status();
        }
        out.request = fresh.value();
        out.created = true;
        return s.request_insert(out.request);
      },
      nullptr);
  if (!st) return st.error();
  if (out.created) announce_request(out.request, {user_id});
  return out;
}

Result<Service::RequestResult> Service::request_friend(const AuthContext& who,
                                                       const std::string& user_id_in,
                                                       std::string text) {
  if (!valid_user_id(user_id_in)) return make_error(Errc::bad_request, "bad user_id");
  const std::string user_id = canonical_user_id(user_id_in);
  if (user_id == who.user_id) return make_error(Errc::bad_request, "one does not befriend oneself");
  if (auto st = check_text(text, kMaxRequestTextBytes, "text"); !st) return st.error();
  std::optional<Request> reverse;
  {
    auto s = lease();
    auto rec = s->find_user(user_id);
    if (!rec) return rec.error();
    if (!rec.value()) return make_error(Errc::not_found, "no such user: " + user_id);
    auto f = s->are_friends(who.user_id, user_id);
    if (!f) return f.error();
    if (f.value()) return make_error(Errc::conflict, "already friends with " + user_id);
    auto r =
        s->request_find_pending(RequestKind::friend_request, 0, who.user_id, user_id, now_ms());
    if (!r) return r.error();
    reverse = std::move(r.value());
  }
  // They asked first: this is a yes.
  if (reverse) return decide_locked(who, std::move(*reverse), true);
  if (int64_t w = requests_limit_.take(who.user_id, now_ms()); w > 0)
    return limited(w, "too many requests made; try again later");
  auto fresh = new_request(RequestKind::friend_request, 0, user_id, who.user_id, std::move(text));
  if (!fresh) return fresh.error();
  RequestResult out;
  auto st = write([&](StoreSession& s) -> Status {
    auto pending =
        s.request_find_pending(RequestKind::friend_request, 0, user_id, who.user_id, now_ms());
    if (!pending) return pending.error();
    if (pending.value()) {
      out.request = std::move(*pending.value());
      return ok_status();
    }
    out.request = fresh.value();
    out.created = true;
    return s.request_insert(out.request);
  });
  if (!st) return st.error();
  if (out.created) announce_request(out.request, {user_id});
  return out;
}

Result<Service::RequestResult> Service::decide(const AuthContext& who, RequestKind kind,
                                               const std::string& id, bool approve) {
  if (!valid_request_id(kind, id))
    return make_error(Errc::not_found, "no such " + std::string(request_kind_name(kind)));
  std::optional<Request> r;
  {
    auto s = lease();
    auto got = s->request_get(id);
    if (!got) return got.error();
    r = std::move(got.value());
  }
  if (!r || r->kind != kind)
    return make_error(Errc::not_found, "no such " + std::string(request_kind_name(kind)));
  return decide_locked(who, std::move(*r), approve);
}

// `r` as read; whether it is still pending is decided in the write.
Result<Service::RequestResult> Service::decide_locked(const AuthContext& who, Request r,
                                                      bool approve) {
  // Who decides: the group's owner and admins (applications), the one asked (the others).
  if (r.kind != RequestKind::application && r.user_id != who.user_id)
    return make_error(Errc::forbidden, "only " + r.user_id + " decides this request");
  const RequestStatus status = !approve
                                   ? RequestStatus::declined
                                   : (r.kind == RequestKind::application ? RequestStatus::approved
                                                                         : RequestStatus::accepted);
  RequestResult out;
  std::vector<Message> system;
  std::vector<std::string> tell;
  ConversationId direct = 0;
  bool direct_created = false;
  const int64_t now = now_ms();
  auto body = [&](StoreSession& s) -> Status {
    // Authorization on the rows as they are now.
    Conversation c;
    if (r.kind != RequestKind::friend_request) {
      auto g = load_group(s, r.conversation_id);
      if (!g) return g.error();
      c = std::move(g.value());
      if (r.kind == RequestKind::application) {
        auto role = role_in(c, who.user_id);
        if (!role || *role < Role::admin)
          return make_error(Errc::forbidden,
                            "only the group's owner and admins decide applications");
        tell = deciders(c);  // every admin's list stays true
      }
    }
    ConversationId result_conv = 0;
    if (status == RequestStatus::accepted && r.kind == RequestKind::friend_request) {
      // The pair's direct conversation, made if they have none.
      const std::string a = std::min(r.user_id, r.from_id), b = std::max(r.user_id, r.from_id);
      const std::string key = a + "|" + b;
      auto existing = s.find_direct(key);
      if (!existing) return existing.error();
      if (existing.value()) {
        result_conv = *existing.value();
      } else {
        Conversation d;
        d.type = ConversationType::direct;
        d.owner = r.from_id;
        d.created_at_ms = now;
        d.members = {Member{a, false, Role::member}, Member{b, false, Role::member}};
        auto made = s.create_conversation(d, key);
        if (!made) return made.error();
        result_conv = made.value();
        direct_created = true;
      }
      direct = result_conv;
    }
    auto decided = s.request_decide(r.id, status, who.user_id, now, result_conv);
    if (!decided) return decided.error();
    if (!decided.value()) return make_error(Errc::conflict, std::string(kDecidedAlready));
    if (status == RequestStatus::approved ||
        (status == RequestStatus::accepted && r.kind == RequestKind::invitation)) {
      if (!is_member(c, r.user_id)) {
        if (auto cap = check_group_cap(s, {r.user_id}); !cap) return cap;
        AuthContext actor = who;
        if (auto st = add_to_group(
                s, c, {r.user_id}, opts_.max_group_members, actor,
                r.kind == RequestKind::application ? "application" : "invitation", system);
            !st)
          return st;
      }
    } else if (status == RequestStatus::accepted) {
      if (auto st = s.add_friend(r.user_id, r.from_id, now); !st) return st;
    }
    return ok_status();
  };
  auto st = r.kind == RequestKind::friend_request ? write(body)
                                                  : write_group(r.conversation_id, body, &system);
  auto reread = [&]() -> Result<Request> {
    auto s = lease();
    auto got = s->request_get(r.id);
    if (!got) return got.error();
    if (!got.value()) return make_error(Errc::not_found, "no such request");
    return std::move(*got.value());
  };
  if (!st) {
    if (st.error().code != Errc::conflict || st.error().message != kDecidedAlready)
      return st.error();
    // Decided before (or expired): the first decision's result, changing nothing.
    auto now_r = reread();
    if (!now_r) return now_r.error();
    if (now_r->status == RequestStatus::pending || now_r->status == RequestStatus::expired)
      return make_error(Errc::conflict,
                        "this " + std::string(request_kind_name(r.kind)) + " expired");
    out.request = std::move(now_r.value());
    if (out.request.kind == RequestKind::friend_request &&
        out.request.status == RequestStatus::accepted && out.request.conversation_id != 0) {
      auto s = lease();
      if (auto c = load_member_view(*s, who, out.request.conversation_id); c)
        out.conversation = std::move(c.value());
    }
    return out;
  }
  auto got = reread();
  if (!got) return got.error();
  out.request = std::move(got.value());
  out.created = false;
  // Who hears of the decision.
  std::vector<std::string> users = tell;
  users.push_back(r.user_id);
  users.push_back(r.from_id);
  announce_request(out.request, users);
  auto s = lease();
  if (direct != 0) {
    if (auto c = load_member_view(*s, who, direct); c) {
      if (direct_created) {
        bus_.declare_conversation(direct);
        announce(c.value(), "created");
      }
      out.conversation = std::move(c.value());
    }
  } else if (!system.empty()) {
    auto c = s->get_conversation(r.conversation_id);
    if (c && c.value()) {
      announce(before_seq(*c.value(), system), "member_added", "", system.front().body);
      out.conversation = std::move(*c.value());
    }
  }
  return out;
}

Result<Request> Service::pending_request(RequestKind kind, ConversationId id,
                                         const std::string& user_id, const std::string& from_id) {
  auto s = lease();
  auto r = s->request_find_pending(kind, id, user_id, from_id, now_ms());
  if (!r) return r.error();
  if (!r.value())
    return make_error(Errc::not_found, "no pending " + std::string(request_kind_name(kind)));
  return std::move(*r.value());
}

namespace {
void newest_first(std::vector<Request>& v) {
  std::sort(v.begin(), v.end(), [](const Request& a, const Request& b) {
    return a.created_at_ms != b.created_at_ms ? a.created_at_ms > b.created_at_ms : a.id > b.id;
  });
  if (static_cast<int64_t>(v.size()) > kListMax) v.resize(static_cast<std::size_t>(kListMax));
}
}  // namespace

Result<std::vector<Request>> Service::list_applications(const AuthContext& who, ConversationId id) {
  auto s = lease();
  const int64_t now = now_ms();
  if (id != 0) {
    auto c = load_member_view(*s, who, id);
    if (!c) return c.error();
    auto role = role_in(c.value(), who.user_id);
    if (!role || *role < Role::admin)
      return make_error(Errc::forbidden, "only the group's owner and admins see its applications");
    return s->requests_of_conversation(RequestKind::application, id, now, kListMax);
  }
  std::vector<Request> out;
  auto convs = s->list_conversations(who.user_id);
  if (!convs) return convs.error();
  for (auto& c : convs.value()) {
    if (c.type != ConversationType::group) continue;
    auto role = role_in(c, who.user_id);
    if (!role || *role < Role::admin) continue;
    auto rs = s->requests_of_conversation(RequestKind::application, c.id, now, kListMax);
    if (!rs) return rs.error();
    out.insert(out.end(), rs->begin(), rs->end());
  }
  auto mine = s->requests_of_user(RequestKind::application, who.user_id, false, now, kListMax);
  if (!mine) return mine.error();
  out.insert(out.end(), mine->begin(), mine->end());
  newest_first(out);
  return out;
}

Result<std::vector<Request>> Service::list_invitations(const AuthContext& who) {
  auto s = lease();
  return s->requests_of_user(RequestKind::invitation, who.user_id, true, now_ms(), kListMax);
}

Result<std::vector<Request>> Service::list_friend_requests(const AuthContext& who) {
  auto s = lease();
  return s->requests_of_user(RequestKind::friend_request, who.user_id, true, now_ms(), kListMax);
}

Result<std::vector<Service::FriendView>> Service::list_friends(const AuthContext& who) {
  auto s = lease();
  auto fs = s->list_friends(who.user_id);
  if (!fs) return fs.error();
  std::vector<FriendView> out;
  out.reserve(fs->size());
  for (auto& f : fs.value()) {
    FriendView v{f.user_id, f.user_id, f.since_ms};
    if (auto u = s->find_user(f.user_id); u && u.value()) v.name = u.value()->user.name;
    out.push_back(std::move(v));
  }
  return out;
}

Status Service::remove_friend(const AuthContext& who, const std::string& user_id) {
  if (!valid_user_id(user_id)) return make_error(Errc::bad_request, "bad user_id");
  const std::string other = canonical_user_id(user_id);
  return write([&](StoreSession& s) { return s.remove_friend(who.user_id, other); });
}

Result<User> Service::set_direct_policy(const AuthContext& who, DirectPolicy p) {
  if (auto st = write([&](StoreSession& s) { return s.set_direct_policy(who.user_id, p); }); !st)
    return st.error();
  return find_user(who.user_id);
}

Result<std::pair<std::vector<User>, bool>> Service::search_users(const AuthContext& /*who*/,
                                                                 const std::string& query,
                                                                 const std::string& after,
                                                                 int64_t limit) {
  if (limit < 1 || limit > 100) return make_error(Errc::bad_request, "limit is 1 to 100");
  if (query.size() > 128 || !utf8_valid(query))
    return make_error(Errc::bad_request, "q is at most 128 bytes of UTF-8");
  if (!after.empty() && !valid_user_id(after)) return make_error(Errc::bad_request, "bad after");
  auto s = lease();
  auto users = s->search_users(query, canonical_user_id(after), limit + 1);
  if (!users) return users.error();
  bool more = static_cast<int64_t>(users->size()) > limit;
  if (more) users->resize(static_cast<std::size_t>(limit));
  return std::make_pair(std::move(users.value()), more);
}

Result<int64_t> Service::expire_requests() {
  int64_t n = 0;
  auto st = write([&](StoreSession& s) -> Status {
    auto r = s.requests_expire(now_ms());
    if (!r) return r.error();
    n = r.value();
    return ok_status();
  });
  if (!st) return st.error();
  return n;
}

}  // namespace converge
