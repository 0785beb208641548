#include "gateway/http/commands.hpp"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

#include "base/utf8.hpp"
#include "proto/codec.hpp"
#include "service/rooms.hpp"
#include "service/service.hpp"

namespace converge {

namespace json = boost::json;

namespace {

constexpr std::size_t kTextMax = 1024;
constexpr std::size_t kNoticeMax = 4096;

Result<std::string> user_field(const json::object& d, std::string_view key) {
  auto u = proto::get_string(d, key, true, 64);
  if (!u) return u.error();
  if (!valid_user_id(u.value()))
    return make_error(Errc::bad_request, std::string(key) + " is not a user id");
  return canonical_user_id(u.value());
}

// A field that may be absent; too long is bad_request (the service says which limit).
Result<std::optional<std::string>> optional_text(const json::object& d, std::string_view key,
                                                 std::size_t max) {
  auto* v = d.if_contains(key);
  if (!v || v->is_null()) return std::optional<std::string>();
  if (!v->is_string()) return make_error(Errc::bad_request, std::string(key) + " must be a string");
  auto& s = v->as_string();
  if (s.size() > max)
    return make_error(Errc::too_large,
                      std::string(key) + " is longer than " + std::to_string(max) + " bytes");
  return std::optional<std::string>(std::string(s));
}

json::object request_reply(const Service::RequestResult& r, const AuthContext& who) {
  json::object o = proto::request_json(r.request);
  if (r.conversation) o["conversation"] = proto::conversation_json(*r.conversation, who.user_id);
  return o;
}

json::object requests_reply(const char* key, const std::vector<Request>& rs) {
  json::array a;
  a.reserve(rs.size());
  for (auto& r : rs) a.emplace_back(proto::request_json(r));
  return json::object{{key, std::move(a)}};
}

Result<CommandReply> conversation_reply(Result<Conversation> c, const AuthContext& who) {
  if (!c) return c.error();
  return CommandReply{200, proto::conversation_json(c.value(), who.user_id)};
}

Result<CommandReply> made(Result<Service::RequestResult> r, const AuthContext& who) {
  if (!r) return r.error();
  return CommandReply{r->created ? 201 : 200, request_reply(r.value(), who)};
}

Result<CommandReply> decided(Result<Service::RequestResult> r, const AuthContext& who,
                             bool friend_request) {
  if (!r) return r.error();
  if (friend_request) {  // {request, conversation?}
    json::object o;
    o["request"] = proto::request_json(r->request);
    if (r->conversation)
      o["conversation"] = proto::conversation_json(*r->conversation, who.user_id);
    // The request's own fields too, so that every decision answers the same shape.
    for (auto& [k, v] : proto::request_json(r->request)) o[k] = v;
    return CommandReply{200, std::move(o)};
  }
  return CommandReply{200, request_reply(r.value(), who)};
}

Result<std::string> request_id(const json::object& d, std::string_view key) {
  return proto::get_string(d, key, true, 64);
}

}  // namespace

bool is_group_command(std::string_view n) {
  static constexpr std::string_view kNames[] = {"conversation.update",
                                                "conversation.set_role",
                                                "conversation.transfer",
                                                "group.get",
                                                "application.create",
                                                "application.approve",
                                                "application.decline",
                                                "application.list",
                                                "invitation.create",
                                                "invitation.accept",
                                                "invitation.decline",
                                                "invitation.list",
                                                "friend_request.create",
                                                "friend_request.accept",
                                                "friend_request.decline",
                                                "friend_request.list",
                                                "friend.list",
                                                "friend.remove",
                                                "user.search",
                                                "me.update"};
  for (auto k : kNames)
    if (k == n) return true;
  return false;
}

Result<CommandReply> run_group_command(Service& svc, const AuthContext& who, std::string_view n,
                                       const json::object& d) {
  if (n == "conversation.update") {
    auto id = proto::get_conversation_id(d, "conversation_id");
    if (!id) return id.error();
    Service::GroupUpdate u;
    auto name = optional_text(d, "name", 256);
    if (!name) return name.error();
    u.name = std::move(name.value());
    auto notice = optional_text(d, "notice", kNoticeMax);
    if (!notice) return notice.error();
    u.notice = std::move(notice.value());
    auto jp = optional_text(d, "join_policy", 32);
    if (!jp) return jp.error();
    if (jp.value()) {
      auto p = parse_join_policy(*jp.value());
      if (!p) return make_error(Errc::bad_request, "join_policy is open, approval or invite_only");
      u.join_policy = *p;
    }
    return conversation_reply(svc.update_group(who, id.value(), std::move(u)), who);
  }
  if (n == "conversation.set_role") {
    auto id = proto::get_conversation_id(d, "conversation_id");
    if (!id) return id.error();
    auto user = user_field(d, "user_id");
    if (!user) return user.error();
    auto role = proto::get_string(d, "role", true, 16);
    if (!role) return role.error();
    auto r = parse_role(role.value());
    if (!r) return make_error(Errc::bad_request, "role is admin or member");
    return conversation_reply(svc.set_role(who, id.value(), user.value(), *r), who);
  }
  if (n == "conversation.transfer") {
    auto id = proto::get_conversation_id(d, "conversation_id");
    if (!id) return id.error();
    auto user = user_field(d, "user_id");
    if (!user) return user.error();
    return conversation_reply(svc.transfer_owner(who, id.value(), user.value()), who);
  }
  if (n == "group.get") {
    auto id = proto::get_conversation_id(d, "conversation_id");
    if (!id) return id.error();
    auto g = svc.group_summary(who, id.value());
    if (!g) return g.error();
    json::object o;
    o["conversation_id"] = proto::conversation_id_str(g->id);
    o["id"] = proto::conversation_id_str(g->id);
    o["name"] = g->name;
    o["join_policy"] = join_policy_name(g->join_policy);
    o["member_count"] = g->member_count;
    o["member"] = g->member;
    return CommandReply{200, std::move(o)};
  }
  if (n == "application.create") {
    auto id = proto::get_conversation_id(d, "conversation_id");
    if (!id) return id.error();
    auto text = optional_text(d, "text", kTextMax);
    if (!text) return text.error();
    return made(svc.apply(who, id.value(), text->value_or("")), who);
  }
  if (n == "application.approve" || n == "application.decline") {
    auto id = request_id(d, "application_id");
    if (!id) return id.error();
    return decided(
        svc.decide(who, RequestKind::application, id.value(), n == "application.approve"), who,
        false);
  }
  if (n == "application.list") {
    ConversationId id = 0;
    if (auto* v = d.if_contains("conversation_id"); v && !v->is_null()) {
      auto c = proto::get_conversation_id(d, "conversation_id");
      if (!c) return c.error();
      id = c.value();
    }
    auto rs = svc.list_applications(who, id);
    if (!rs) return rs.error();
    return CommandReply{200, requests_reply("applications", rs.value())};
  }
  if (n == "invitation.create") {
    auto id = proto::get_conversation_id(d, "conversation_id");
    if (!id) return id.error();
    auto user = user_field(d, "user_id");
    if (!user) return user.error();
    auto text = optional_text(d, "text", kTextMax);
    if (!text) return text.error();
    return made(svc.invite(who, id.value(), user.value(), text->value_or("")), who);
  }
  if (n == "invitation.accept" || n == "invitation.decline") {
    auto id = request_id(d, "invitation_id");
    if (!id) return id.error();
    return decided(svc.decide(who, RequestKind::invitation, id.value(), n == "invitation.accept"),
                   who, false);
  }
  if (n == "invitation.list") {
    auto rs = svc.list_invitations(who);
    if (!rs) return rs.error();
    return CommandReply{200, requests_reply("invitations", rs.value())};
  }
  if (n == "friend_request.create") {
    auto user = user_field(d, "user_id");
    if (!user) return user.error();
    auto text = optional_text(d, "text", kTextMax);
    if (!text) return text.error();
    auto r = svc.request_friend(who, user.value(), text->value_or(""));
    if (!r) return r.error();
    if (r->request.status == RequestStatus::accepted)  // they had asked: accepted
      return decided(std::move(r), who, true);
    return made(std::move(r), who);
  }
  if (n == "friend_request.accept" || n == "friend_request.decline") {
    auto id = request_id(d, "request_id");
    if (!id) return id.error();
    return decided(
        svc.decide(who, RequestKind::friend_request, id.value(), n == "friend_request.accept"), who,
        true);
  }
  if (n == "friend_request.list") {
    auto rs = svc.list_friend_requests(who);
    if (!rs) return rs.error();
    return CommandReply{200, requests_reply("friend_requests", rs.value())};
  }
  if (n == "friend.list") {
    auto fs = svc.list_friends(who);
    if (!fs) return fs.error();
    json::array a;
    for (auto& f : fs.value())
      a.emplace_back(json::object{{"user_id", f.user_id}, {"name", f.name}, {"since", f.since_ms}});
    return CommandReply{200, json::object{{"friends", std::move(a)}}};
  }
  if (n == "friend.remove") {
    auto user = user_field(d, "user_id");
    if (!user) return user.error();
    if (auto st = svc.remove_friend(who, user.value()); !st) return st.error();
    return CommandReply{200, json::object{}};
  }
  if (n == "user.search") {
    auto q = optional_text(d, "q", 128);
    if (!q) return q.error();
    auto after = optional_text(d, "after", 64);
    if (!after) return after.error();
    auto limit = proto::get_int(d, "limit", false, 20);
    if (!limit) return limit.error();
    auto r = svc.search_users(who, q->value_or(""), after->value_or(""), limit.value());
    if (!r) return r.error();
    json::array a;
    for (auto& u : r->first) a.emplace_back(json::object{{"user_id", u.id}, {"name", u.name}});
    json::object o{{"users", std::move(a)}};
    if (r->second && !r->first.empty()) o["next"] = r->first.back().id;
    return CommandReply{200, std::move(o)};
  }
  if (n == "me.update") {
    auto p = proto::get_string(d, "direct_policy", true, 16);
    if (!p) return p.error();
    auto dp = parse_direct_policy(p.value());
    if (!dp) return make_error(Errc::bad_request, "direct_policy is anyone or friends");
    auto u = svc.set_direct_policy(who, *dp);
    if (!u) return u.error();
    auto o = proto::user_json(u.value());
    o["direct_policy"] = direct_policy_name(u->direct_policy);
    return CommandReply{200, std::move(o)};
  }
  return make_error(Errc::unknown_cmd, "unknown cmd: " + std::string(n));
}

// ----------------------------------------------------------------------------- voice rooms

json::object room_json(const Room& r) {
  return json::object{{"room_id", r.id},
                      {"id", r.id},
                      {"name", r.name},
                      {"owner", r.owner},
                      {"max_members", r.max_members},
                      {"member_count", r.member_count},
                      {"created_at", r.created_at_ms}};
}

json::object room_view_json(const RoomJoinView& v) {
  json::object o = room_json(v.room);
  json::array ms;
  ms.reserve(v.members.size());
  for (auto& m : v.members)
    ms.emplace_back(json::object{{"user_id", m.user_id},
                                 {"member_no", m.member_no},
                                 {"muted", m.muted},
                                 {"speaking", m.speaking}});
  o["members"] = std::move(ms);
  o["member_count"] = static_cast<int64_t>(v.members.size());
  if (v.me != 0) o["me"] = v.me;
  return o;
}

namespace {
Result<RoomId> room_id_field(const json::object& d) {
  auto* v = d.if_contains("room_id");
  if (!v) return make_error(Errc::bad_request, "room_id is required");
  int64_t n = 0;
  if (v->is_int64()) {
    n = v->as_int64();
  } else if (v->is_uint64()) {
    n = v->as_uint64() > UINT32_MAX ? 0 : static_cast<int64_t>(v->as_uint64());
  } else if (v->is_string()) {
    auto id = parse_conversation_id(v->as_string());  // a positive decimal
    n = id ? *id : 0;
  }
  if (n <= 0 || n > static_cast<int64_t>(UINT32_MAX))
    return make_error(Errc::bad_request, "room_id is a positive integer below 2^32");
  return static_cast<RoomId>(n);
}

Result<bool> bool_field(const json::object& d, const char* key) {
  auto* v = d.if_contains(key);
  if (!v || !v->is_bool())
    return make_error(Errc::bad_request, std::string(key) + " must be a boolean");
  return v->as_bool();
}
}  // namespace

bool is_room_command(std::string_view n) {
  return n == "room.join" || n == "room.leave" || n == "room.mute" || n == "room.mute_member" ||
         n == "room.remove" || n == "room.send";
}

Result<CommandReply> run_room_command(Rooms& rooms, const AuthContext& who, int shard, int64_t conn,
                                      std::string_view n, const json::object& d) {
  auto id = room_id_field(d);
  if (!id) return id.error();
  const json::object reply{{"room_id", id.value()}};
  if (n == "room.join") {
    auto v = rooms.join(who, id.value(), shard, conn);
    if (!v) return v.error();
    return CommandReply{200, room_view_json(v.value())};
  }
  if (n == "room.leave") {
    if (auto st = rooms.leave(who, id.value(), conn); !st) return st.error();
    return CommandReply{200, reply};
  }
  if (n == "room.mute") {
    auto m = bool_field(d, "muted");
    if (!m) return m.error();
    if (auto st = rooms.mute(who, id.value(), conn, m.value()); !st) return st.error();
    json::object o = reply;
    o["muted"] = m.value();
    return CommandReply{200, std::move(o)};
  }
  if (n == "room.mute_member" || n == "room.remove") {
    auto user = user_field(d, "user_id");
    if (!user) return user.error();
    if (n == "room.remove") {
      if (auto st = rooms.remove_member(who, id.value(), user.value()); !st) return st.error();
      json::object o = reply;
      o["user_id"] = user.value();
      return CommandReply{200, std::move(o)};
    }
    auto m = bool_field(d, "muted");
    if (!m) return m.error();
    if (auto st = rooms.mute_member(who, id.value(), user.value(), m.value()); !st)
      return st.error();
    json::object o = reply;
    o["user_id"] = user.value();
    o["muted"] = m.value();
    return CommandReply{200, std::move(o)};
  }
  if (n == "room.send") {
    std::string to;
    if (auto* t = d.if_contains("to"); t && !t->is_null()) {
      auto u = user_field(d, "to");
      if (!u) return u.error();
      to = u.value();
    }
    auto* b = d.if_contains("body");
    if (!b || b->is_null()) return make_error(Errc::bad_request, "body is required");
    if (b->is_string() && !utf8_valid(b->as_string()))
      return make_error(Errc::bad_request, "body is not UTF-8");
    if (auto st = rooms.send(who, id.value(), conn, to, json::serialize(*b)); !st)
      return st.error();
    return CommandReply{200, reply};
  }
  return make_error(Errc::unknown_cmd, "unknown cmd: " + std::string(n));
}

}  // namespace converge
