#include "gateway/http/api.hpp"

#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>
#include <future>
#include <vector>

#include "base/clock.hpp"
#include "base/metrics.hpp"
#include "base/utf8.hpp"
#include "gateway/http/commands.hpp"
#include "proto/codec.hpp"
#include "service/cluster.hpp"
#include "service/rooms.hpp"
#include "service/service.hpp"

namespace converge {

namespace json = boost::json;

namespace {

ApiResponse json_response(int status, const json::object& o) {
  ApiResponse r;
  r.status = status;
  r.body = proto::serialize(o);
  return r;
}

// The parsed target: path segments after /api/v1 and decoded query parameters.
struct Route {
  std::vector<std::string> seg;
  std::map<std::string, std::string> query;
  bool has(const char* k) const { return query.count(k) != 0; }
};

Result<int64_t> query_int(const Route& r, const char* key, int64_t dflt, int64_t min) {
  auto it = r.query.find(key);
  if (it == r.query.end() || it->second.empty()) return dflt;
  int64_t v = 0;
  auto& s = it->second;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v < min)
    return make_error(Errc::bad_request,
                      std::string(key) + " must be an integer >= " + std::to_string(min));
  return v;
}

class Handler {
 public:
  Handler(Service& svc, const ApiOptions& opts, const ApiRequest& req, Route route)
      : svc_(svc), opts_(opts), req_(req), r_(std::move(route)) {}

  ApiResponse run() {
    auto& s = r_.seg;
    const auto& m = req_.method;
    if (s.size() == 1 && s[0] == "users" && m == "POST") return register_user(false);
    if (s.size() == 1 && s[0] == "login" && m == "POST") return login();
    // Everything below needs a token.
    auto who = auth();
    if (!who) return error_response(who.error());
    const AuthContext& a = who.value();
    if (s.size() == 1 && s[0] == "logout" && m == "POST") return logout(a);
    if (s.size() == 1 && s[0] == "logout-all" && m == "POST") return logout_all(a);
    if (s.size() == 1 && s[0] == "password" && m == "POST") return change_password(a);
    if (s.size() == 1 && s[0] == "me" && m == "GET") return me(a);
    if (s.size() == 1 && s[0] == "me" && m == "PATCH") return call(a, "me.update", body());
    if (s.size() == 1 && s[0] == "users" && m == "GET") return search_users(a);
    if (s.size() == 2 && s[0] == "users" && m == "GET") return user(s[1]);
    if (s.size() == 3 && s[0] == "users" && s[2] == "friend-requests" && m == "POST")
      return call(a, "friend_request.create", with(body_or_empty(), "user_id", s[1]));
    if (s.size() == 1 && s[0] == "friend-requests" && m == "GET")
      return call(a, "friend_request.list", json::object{});
    if (s.size() == 3 && s[0] == "friend-requests" && m == "POST" &&
        (s[2] == "accept" || s[2] == "decline"))
      return call(a, s[2] == "accept" ? "friend_request.accept" : "friend_request.decline",
                  json::object{{"request_id", s[1]}});
    if (s.size() == 1 && s[0] == "friends" && m == "GET")
      return call(a, "friend.list", json::object{});
    if (s.size() == 2 && s[0] == "friends" && m == "DELETE")
      return call(a, "friend.remove", json::object{{"user_id", s[1]}});
    if (s.size() == 1 && s[0] == "applications" && m == "GET") {
      json::object d;
      if (auto it = r_.query.find("conversation_id"); it != r_.query.end())
        d["conversation_id"] = it->second;
      return call(a, "application.list", std::move(d));
    }
    if (s.size() == 3 && s[0] == "applications" && m == "POST" &&
        (s[2] == "approve" || s[2] == "decline"))
      return call(a, s[2] == "approve" ? "application.approve" : "application.decline",
                  json::object{{"application_id", s[1]}});
    if (s.size() == 1 && s[0] == "invitations" && m == "GET")
      return call(a, "invitation.list", json::object{});
    if (s.size() == 3 && s[0] == "invitations" && m == "POST" &&
        (s[2] == "accept" || s[2] == "decline"))
      return call(a, s[2] == "accept" ? "invitation.accept" : "invitation.decline",
                  json::object{{"invitation_id", s[1]}});
    if (s.size() == 2 && s[0] == "groups" && m == "GET") {
      if (!parse_conversation_id(s[1]))
        return error_response(make_error(Errc::not_found, "no such group"));
      return call(a, "group.get", json::object{{"conversation_id", s[1]}});
    }
    if (s.size() == 1 && s[0] == "presence" && m == "GET") return presence(a);
    if (s.size() == 1 && s[0] == "conversations") {
      if (m == "GET") return list_conversations(a);
      if (m == "POST") return create_conversation(a);
      return not_allowed();
    }
    if (s.size() >= 2 && s[0] == "conversations") {
      auto id = parse_conversation_id(s[1]);
      if (!id) return error_response(make_error(Errc::not_found, "no such conversation"));
      if (s.size() == 2 && m == "GET") return get_conversation(a, *id);
      const std::string cid = std::to_string(*id);
      if (s.size() == 2 && m == "PATCH")
        return call(a, "conversation.update", with(body(), "conversation_id", cid));
      if (s.size() == 4 && s[2] == "roles" && m == "PUT") {
        auto d = with(body(), "conversation_id", cid);
        if (d) d.value()["user_id"] = s[3];
        return call(a, "conversation.set_role", std::move(d));
      }
      if (s.size() == 3 && s[2] == "owner" && m == "POST")
        return call(a, "conversation.transfer", with(body(), "conversation_id", cid));
      if (s.size() == 3 && s[2] == "applications" && m == "POST")
        return call(a, "application.create", with(body_or_empty(), "conversation_id", cid));
      if (s.size() == 3 && s[2] == "applications" && m == "GET")
        return call(a, "application.list", json::object{{"conversation_id", cid}});
      if (s.size() == 3 && s[2] == "invitations" && m == "POST")
        return call(a, "invitation.create", with(body(), "conversation_id", cid));
      if (s.size() == 3 && s[2] == "members" && m == "POST") return add_members(a, *id);
      if (s.size() == 4 && s[2] == "members" && m == "DELETE") return remove_member(a, *id, s[3]);
      if (s.size() == 3 && s[2] == "messages" && m == "GET") return history(a, *id);
      if (s.size() == 3 && s[2] == "messages" && m == "POST") return send(a, *id);
      if (s.size() == 3 && s[2] == "mute" && m == "POST") return mute(a, *id);
      // A known path with another method is 405; anything else is 404.
      bool known =
          s.size() == 2 ||
          (s.size() == 3 && (s[2] == "members" || s[2] == "messages" || s[2] == "mute" ||
                             s[2] == "owner" || s[2] == "applications" || s[2] == "invitations")) ||
          (s.size() == 4 && (s[2] == "members" || s[2] == "roles"));
      return known ? not_allowed() : not_found();
    }
    if (!s.empty() && s[0] == "rooms" && opts_.rooms) return rooms(a);
    if (s.size() == 1 && s[0] == "offline" && m == "GET") return offline(a);
    if (s.size() == 1 && s[0] == "heartbeat" && m == "POST") return heartbeat(a);
    if (s.size() == 1 && s[0] == "files" && m == "POST") return upload(a);
    if (s.size() == 2 && s[0] == "files" && m == "GET") return download(a, s[1]);
    if (s.size() >= 2 && s[0] == "admin") {
      if (!a.is_admin) return error_response(make_error(Errc::forbidden, "admin only"));
      if (s.size() == 2 && s[1] == "users" && m == "POST") return register_user(true);
      if (s.size() == 2 && s[1] == "users" && m == "GET") return list_users(a);
      if (s.size() == 2 && s[1] == "events" && m == "POST") return event(a);
      if (s.size() == 2 && s[1] == "broadcast" && m == "POST") return broadcast(a);
      if (s.size() == 2 && s[1] == "notify" && m == "POST") return admin_notify(a);
      if (s.size() == 3 && s[1] == "config" && m == "POST") return backend_config(a, s[2]);
      if (s.size() == 2 && s[1] == "nodes" && m == "GET") return nodes();
      if (s.size() == 3 && s[1] == "push" && s[2] == "dead-letters" && m == "GET")
        return dead_letters(a);
    }
    return not_found();
  }

 private:
  ApiResponse not_found() {
    return error_response(
        make_error(Errc::not_found, "no such endpoint: " + req_.method + " " + req_.target));
  }
  ApiResponse not_allowed() {
    ApiResponse r = api_error(405, "bad_request", "method not allowed");
    return r;
  }

  Result<json::object> body() {
    if (req_.body.empty()) return make_error(Errc::bad_json, "a JSON body is required");
    return proto::parse_object(req_.body);
  }
  // A body that may be absent (an empty object then).
  Result<json::object> body_or_empty() {
    if (req_.body.empty()) return json::object{};
    return proto::parse_object(req_.body);
  }
  // The body with a path id put in (the path wins over the body).
  static Result<json::object> with(Result<json::object> b, const char* key, const std::string& v) {
    if (b) b.value()[key] = v;
    return b;
  }
  // A group command (gateway/http/commands.hpp), answered with its status and body.
  ApiResponse call(const AuthContext& a, std::string_view name, Result<json::object> data) {
    if (!data) return error_response(data.error());
    auto r = run_group_command(svc_, a, name, data.value());
    if (!r) return error_response(r.error());
    return json_response(r->status, r->body);
  }

  // Voice rooms (DESIGN.md section 7): POST/GET /rooms, GET/DELETE /rooms/{id}.
  ApiResponse rooms(const AuthContext& a) {
    auto& s = r_.seg;
    const auto& m = req_.method;
    Rooms& rooms = *opts_.rooms;
    if (s.size() == 1 && m == "POST") {
      auto b = body();
      if (!b) return error_response(b.error());
      auto name = proto::get_string(b.value(), "name", false, 256);
      if (!name) return error_response(name.error());
      auto max = proto::get_int(b.value(), "max_members", false, 50);
      if (!max) return error_response(max.error());
      auto r = rooms.create(a, name.value(), max.value());
      if (!r) return error_response(r.error());
      return json_response(201, room_json(r.value()));
    }
    if (s.size() == 1 && m == "GET") {
      auto after = query_int(r_, "after", 0, 0);
      if (!after) return error_response(after.error());
      auto limit = query_int(r_, "limit", 100, 1);
      if (!limit) return error_response(limit.error());
      if (after.value() > static_cast<int64_t>(UINT32_MAX))
        return error_response(make_error(Errc::bad_request, "after is below 2^32"));
      auto rs = rooms.list(a, static_cast<RoomId>(after.value()), limit.value());
      if (!rs) return error_response(rs.error());
      json::array arr;
      for (auto& r : rs.value()) arr.emplace_back(room_json(r));
      json::object o{{"rooms", std::move(arr)}};
      if (static_cast<int64_t>(rs->size()) == limit.value() && !rs->empty())
        o["next"] = rs->back().id;
      return json_response(200, o);
    }
    if (s.size() == 2) {
      auto id = parse_conversation_id(s[1]);
      if (!id || *id > static_cast<int64_t>(UINT32_MAX))
        return error_response(make_error(Errc::not_found, "no such room"));
      const auto rid = static_cast<RoomId>(*id);
      if (m == "GET") {
        auto v = rooms.get(a, rid);
        if (!v) return error_response(v.error());
        return json_response(200, room_view_json(v.value()));
      }
      if (m == "DELETE") {
        if (auto st = rooms.remove_room(a, rid); !st) return error_response(st.error());
        return json_response(200, json::object{{"room_id", rid}});
      }
      return not_allowed();
    }
    return s.size() == 1 ? not_allowed() : not_found();
  }

  ApiResponse search_users(const AuthContext& a) {
    json::object d;
    for (const char* k : {"q", "after"})
      if (auto it = r_.query.find(k); it != r_.query.end()) d[k] = it->second;
    if (auto it = r_.query.find("limit"); it != r_.query.end()) {
      auto v = query_int(r_, "limit", 20, 0);
      if (!v) return error_response(v.error());
      d["limit"] = v.value();
    }
    return call(a, "user.search", std::move(d));
  }

  // The Authorization header (which must name its scheme), or ?token= (for clients that
  // cannot add a header).
  Result<std::string_view> token() const {
    if (!req_.authorization.empty()) {
      auto t = proto::token_from_authorization(req_.authorization);
      if (!t)
        return make_error(Errc::unauthorized,
                          "Authorization needs a scheme: Bearer <token> (or Tricolor<token>)");
      return *t;
    }
    if (auto it = r_.query.find("token"); it != r_.query.end())
      return proto::strip_token_prefix(it->second);
    return std::string_view();
  }

  Result<AuthContext> auth() {
    auto t = token();
    if (!t) return t.error();
    if (t->empty()) return make_error(Errc::unauthorized, "missing Authorization: Bearer <token>");
    return svc_.authenticate(t.value());
  }

  ApiResponse register_user(bool by_admin) {
    auto b = body();
    if (!b) return error_response(b.error());
    auto uid = proto::get_string(b.value(), "user_id", false, 64);
    if (!uid) return error_response(uid.error());
    auto name = proto::get_string(b.value(), "name", false, 128);
    if (!name) return error_response(name.error());
    auto pw = proto::get_string(b.value(), "password", true, 1024);
    if (!pw) return error_response(pw.error());
    bool admin = false;
    if (by_admin) {
      if (auto* v = b->if_contains("admin"); v && v->is_bool()) admin = v->as_bool();
    }
    auto u = svc_.register_user(uid.value(), name.value(), pw.value(), by_admin, admin,
                                req_.remote_address);
    if (!u) return error_response(u.error());
    return json_response(201, proto::user_json(u.value()));
  }

  ApiResponse login() {
    auto b = body();
    if (!b) return error_response(b.error());
    auto uid = proto::get_string(b.value(), "user_id", true, 64);
    if (!uid) return error_response(uid.error());
    auto pw = proto::get_string(b.value(), "password", true, 1024);
    if (!pw) return error_response(pw.error());
    auto dev = proto::get_string(b.value(), "device_id", false, 64);
    if (!dev) return error_response(dev.error());
    std::string device = dev->empty() ? "default" : dev.value();
    auto r = svc_.login(uid.value(), pw.value(), device, req_.remote_address);
    if (!r) return error_response(r.error());
    json::object o;
    o["token"] = r->token;
    o["user_id"] = r->auth.user_id;
    o["name"] = r->auth.user_name;
    o["device_id"] = r->auth.device_id;
    o["admin"] = r->auth.is_admin;
    o["expires_at"] = r->auth.expires_at_ms;
    return json_response(200, o);
  }

  ApiResponse logout(const AuthContext& a) {
    auto st = svc_.logout(a);
    if (!st) return error_response(st.error());
    return json_response(200, json::object{});
  }

  ApiResponse logout_all(const AuthContext& a) {
    auto n = svc_.logout_all(a);
    if (!n) return error_response(n.error());
    return json_response(200, json::object{{"revoked", n.value()}});
  }

  ApiResponse change_password(const AuthContext& a) {
    auto b = body();
    if (!b) return error_response(b.error());
    auto old_pw = proto::get_string(b.value(), "old_password", true, 1024);
    if (!old_pw) return error_response(old_pw.error());
    auto new_pw = proto::get_string(b.value(), "new_password", true, 1024);
    if (!new_pw) return error_response(new_pw.error());
    auto n = svc_.change_password(a, old_pw.value(), new_pw.value(), req_.remote_address);
    if (!n) return error_response(n.error());
    return json_response(200, json::object{{"revoked", n.value()}});
  }

  ApiResponse me(const AuthContext& a) {
    json::object o;
    o["user_id"] = a.user_id;
    o["name"] = a.user_name;
    o["device_id"] = a.device_id;
    o["admin"] = a.is_admin;
    o["expires_at"] = a.expires_at_ms;
    if (auto u = svc_.find_user(a.user_id); u)
      o["direct_policy"] = direct_policy_name(u->direct_policy);
    return json_response(200, o);
  }

  ApiResponse user(const std::string& id) {
    auto u = svc_.find_user(id);
    if (!u) return error_response(u.error());
    json::object o;
    o["user_id"] = u->id;
    o["name"] = u->name;
    return json_response(200, o);
  }

  // ?users=a,b,c: who of them is connected, on any node (Service::presence says who is shown).
  ApiResponse presence(const AuthContext& a) {
    auto it = r_.query.find("users");
    if (it == r_.query.end() || it->second.empty())
      return error_response(make_error(Errc::bad_request, "users=<id>,<id>,... is required"));
    std::vector<std::string> ids;
    // Every piece between commas, empty ones too (refused as ids: "a,,b" and "a," are 400).
    std::string_view rest = it->second;
    for (;;) {
      auto comma = rest.find(',');
      ids.emplace_back(rest.substr(0, comma));
      if (ids.size() > Service::kPresenceQueryMax || comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    auto got = svc_.presence(a, ids);
    if (!got) return error_response(got.error());
    json::array arr;
    for (auto& p : got.value()) {
      json::object o{{"user_id", p.user_id},
                     {"online", !p.connections.empty()},
                     {"connections", p.connections.size()}};
      if (p.detailed) {
        json::array conns;
        for (auto& c : p.connections)
          conns.emplace_back(json::object{{"device_id", c.device_id},
                                          {"node_id", c.node_id},
                                          {"protocol", c.protocol},
                                          {"since", c.since_ms}});
        o["devices"] = std::move(conns);
      }
      arr.emplace_back(std::move(o));
    }
    return json_response(200, json::object{{"presence", std::move(arr)}});
  }

  ApiResponse list_users(const AuthContext& a) {
    auto users = svc_.list_users(a);
    if (!users) return error_response(users.error());
    json::array arr;
    for (auto& u : users.value()) arr.emplace_back(proto::user_json(u));
    json::object o;
    o["users"] = std::move(arr);
    return json_response(200, o);
  }

  // Without `limit`: every conversation (the original form). With it: pages in id order,
  // `next` naming the `after` of the next page while more follow.
  ApiResponse list_conversations(const AuthContext& a) {
    auto limit = query_int(r_, "limit", 0, 1);
    if (!limit) return error_response(limit.error());
    ConversationId after = 0;
    if (auto it = r_.query.find("after"); it != r_.query.end() && !it->second.empty()) {
      auto id = parse_conversation_id(it->second);
      if (!id)
        return error_response(make_error(Errc::bad_request, "after must be a conversation id"));
      after = *id;
    }
    json::object o;
    json::array arr;
    if (limit.value() == 0 && !r_.has("after")) {
      auto cs = svc_.list_conversations(a);
      if (!cs) return error_response(cs.error());
      for (auto& c : cs.value()) arr.emplace_back(proto::conversation_json(c, a.user_id));
    } else {
      if (limit.value() > 1000)
        return error_response(make_error(Errc::bad_request, "limit must be 1..1000"));
      int64_t want = limit.value() == 0 ? 100 : limit.value();
      auto cs = svc_.list_conversations_page(a, after, want + 1);
      if (!cs) return error_response(cs.error());
      auto& v = cs.value();
      bool more = static_cast<int64_t>(v.size()) > want;
      if (more) v.resize(static_cast<std::size_t>(want));
      for (auto& c : v) arr.emplace_back(proto::conversation_json(c, a.user_id));
      if (more) o["next"] = proto::conversation_id_str(v.back().id);
    }
    o["conversations"] = std::move(arr);
    return json_response(200, o);
  }

  ApiResponse create_conversation(const AuthContext& a) {
    auto b = body();
    if (!b) return error_response(b.error());
    auto req = proto::parse_create_conversation(b.value());
    if (!req) return error_response(req.error());
    auto r = svc_.create_conversation(a, std::move(req.value()));
    if (!r) return error_response(r.error());
    return json_response(r->second ? 201 : 200, proto::conversation_json(r->first, a.user_id));
  }

  ApiResponse get_conversation(const AuthContext& a, ConversationId id) {
    auto c = svc_.get_conversation(a, id);
    if (!c) return error_response(c.error());
    return json_response(200, proto::conversation_json(c.value(), a.user_id));
  }

  ApiResponse add_members(const AuthContext& a, ConversationId id) {
    auto b = body();
    if (!b) return error_response(b.error());
    std::vector<std::string> users;
    if (b->contains("members")) {
      auto l = proto::get_user_list(b.value(), "members");
      if (!l) return error_response(l.error());
      users = std::move(l.value());
    } else {
      auto u = proto::get_string(b.value(), "user_id", true, 64);
      if (!u) return error_response(u.error());
      if (!valid_user_id(u.value()))
        return error_response(make_error(Errc::bad_request, "bad user_id"));
      users.push_back(u.value());
    }
    auto c = svc_.add_members(a, id, users);
    if (!c) return error_response(c.error());
    return json_response(200, proto::conversation_json(c.value(), a.user_id));
  }

  ApiResponse remove_member(const AuthContext& a, ConversationId id, const std::string& uid) {
    auto c = svc_.remove_member(a, id, uid);
    if (!c) return error_response(c.error());
    return json_response(200, proto::conversation_json(c.value(), a.user_id));
  }

  ApiResponse mute(const AuthContext& a, ConversationId id) {
    auto b = body();
    if (!b) return error_response(b.error());
    auto* v = b->if_contains("muted");
    if (v == nullptr || !v->is_bool())
      return error_response(make_error(Errc::bad_request, "muted must be true or false"));
    if (auto st = svc_.set_muted(a, id, v->as_bool()); !st) return error_response(st.error());
    json::object o;
    o["muted"] = v->as_bool();
    return json_response(200, o);
  }

  ApiResponse history(const AuthContext& a, ConversationId id) {
    auto after = query_int(r_, "after_seq", 0, 0);
    if (!after) return error_response(after.error());
    auto before = query_int(r_, "before_seq", 0, 1);
    if (!before) return error_response(before.error());
    auto limit = query_int(r_, "limit", 0, 1);
    if (!limit) return error_response(limit.error());
    auto msgs = svc_.history(a, id, after.value(), before.value(), limit.value());
    if (!msgs) return error_response(msgs.error());
    json::array arr;
    for (auto& m : msgs.value()) arr.emplace_back(proto::message_json(m));
    json::object o;
    o["messages"] = std::move(arr);
    return json_response(200, o);
  }

  ApiResponse send(const AuthContext& a, ConversationId id) {
    auto b = body();
    if (!b) return error_response(b.error());
    b.value()["conversation_id"] = proto::conversation_id_str(id);
    auto req = proto::parse_send(b.value(), opts_.max_body_bytes);
    if (!req) return error_response(req.error());
    std::promise<Result<SendAck>> p;
    auto f = p.get_future();
    svc_.send(a, std::move(req.value()), [&p](Result<SendAck> r) { p.set_value(std::move(r)); });
    auto ack = f.get();
    if (!ack) return error_response(ack.error());
    json::object o;
    o["conversation_id"] = proto::conversation_id_str(ack->conversation_id);
    o["seq"] = ack->seq;
    o["client_msg_id"] = ack->client_msg_id;
    o["ts"] = ack->ts_ms;
    o["duplicate"] = ack->duplicate;
    return json_response(ack->duplicate ? 200 : 201, o);
  }

  ApiResponse offline(const AuthContext& a) {
    auto limit = query_int(r_, "limit", 0, 1);
    if (!limit) return error_response(limit.error());
    SyncRequest req;
    req.limit = limit.value();
    if (auto it = r_.query.find("cursor"); it != r_.query.end()) req.cursor = it->second;
    auto page = svc_.sync(a, req);
    if (!page) return error_response(page.error());
    ApiResponse res;
    res.status = 200;
    res.body = proto::sync_page_body(page.value());
    return res;
  }

  ApiResponse heartbeat(const AuthContext& a) {
    json::object b;
    if (!req_.body.empty()) {
      auto parsed = body();
      if (!parsed) return error_response(parsed.error());
      b = std::move(parsed.value());
    }
    auto seqs = proto::parse_seqs(b);
    if (!seqs) return error_response(seqs.error());
    auto r = svc_.heartbeat(a, seqs.value());
    if (!r) return error_response(r.error());
    json::object o;
    o["seqs"] = proto::seqs_json(r.value());
    o["interval_ms"] = opts_.heartbeat_interval_ms;
    o["ts"] = now_ms();
    return json_response(200, o);
  }

  ApiResponse upload(const AuthContext& a) {
    std::string name = r_.query.count("name") ? r_.query.at("name") : std::string();
    auto f = svc_.store_file(a, name, req_.content_type, req_.body);
    if (!f) return error_response(f.error());
    return json_response(201, proto::file_json(f.value()));
  }

  ApiResponse download(const AuthContext& a, const std::string& id) {
    auto f = svc_.open_file(a, id);
    if (!f) return error_response(f.error());
    ApiResponse r;
    r.status = 200;
    r.content_type = f->meta.mime;
    r.file_path = f->path;
    std::string safe;
    for (char c : f->meta.name) safe += (c == '"' || c == '\\') ? '_' : c;
    // Media is shown inline; anything else (HTML, SVG, scripts) is a download, and no upload
    // ever runs as a page of this origin, where the web client keeps its token.
    const auto& mime = f->meta.mime;
    bool media = (mime.starts_with("image/") && !mime.starts_with("image/svg")) ||
                 mime.starts_with("audio/") || mime.starts_with("video/");
    r.headers["Content-Disposition"] =
        std::string(media ? "inline" : "attachment") + "; filename=\"" + safe + "\"";
    r.headers["Content-Security-Policy"] = "sandbox; default-src 'none'";
    r.headers["Cache-Control"] = "private, max-age=31536000, immutable";
    r.headers["X-Content-Type-Options"] = "nosniff";
    return r;
  }

  // The notification's `data`: the body's "data" object, or else the body itself without the
  // routing fields, so {"user_id","cmd","data"} and {"user_id", ...fields} both work.
  Result<std::string> payload(const json::object& b) {
    if (auto* d = b.if_contains("data")) {
      if (!d->is_object()) return make_error(Errc::bad_request, "data must be an object");
      return json::serialize(*d);
    }
    json::object rest = b;
    rest.erase("user_id");
    if (rest.empty()) return make_error(Errc::bad_request, "data is required");
    return json::serialize(rest);
  }

  ApiResponse event(const AuthContext& a) {
    auto b = body();
    if (!b) return error_response(b.error());
    auto uid = proto::get_string(b.value(), "user_id", true, 64);
    if (!uid) return error_response(uid.error());
    auto p = payload(b.value());
    if (!p) return error_response(p.error());
    if (auto st = svc_.send_event(a, uid.value(), std::move(p.value())); !st)
      return error_response(st.error());
    return json_response(202, json::object{{"queued", true}});
  }

  // To the admins' connections and queue_m_<uid>_* queues: {to?: admin id, data}.
  ApiResponse admin_notify(const AuthContext& a) {
    auto b = body();
    if (!b) return error_response(b.error());
    std::string to;
    if (b.value().contains("to")) {
      auto t = proto::get_string(b.value(), "to", true, 64);
      if (!t) return error_response(t.error());
      to = t.value();
    }
    auto* d = b.value().if_contains("data");
    if (!d || !d->is_object())
      return error_response(make_error(Errc::bad_request, "data must be an object"));
    if (auto st = svc_.admin_notify(a, to, json::serialize(*d)); !st)
      return error_response(st.error());
    return json_response(202, json::object{{"queued", true}});
  }

  // The nodes of the cluster alive now (this one first in id order with the others).
  ApiResponse nodes() {
    json::array arr;
    for (auto& n : svc_.nodes()) {
      arr.emplace_back(json::object{{"node_id", n.id},
                                    {"started_at", n.started_at_ms},
                                    {"last_seen", n.last_seen_ms},
                                    {"connections", n.connections},
                                    {"address", n.address},
                                    {"cpu_percent", n.cpu_percent},
                                    {"self", n.self}});
    }
    return json_response(200, json::object{{"nodes", std::move(arr)}});
  }

  // Offline push: the pushes given up, newest first: {dead_letters: [{push, attempts,
  // last_error, dead_at}]}, `push` as it was POSTed.
  ApiResponse dead_letters(const AuthContext& a) {
    auto limit = query_int(r_, "limit", 100, 1);
    if (!limit) return error_response(limit.error());
    if (limit.value() > 1000)
      return error_response(make_error(Errc::bad_request, "limit must be at most 1000"));
    auto rows = svc_.push_dead_letters(a, limit.value());
    if (!rows) return error_response(rows.error());
    json::array arr;
    for (auto& r : rows.value()) {
      json::object o;
      auto push = proto::parse_object(r.payload);
      if (push)
        o["push"] = std::move(push.value());
      else  // never expected: the node wrote it
        o["push"] = json::object{{"user_id", r.user_id},
                                 {"conversation_id", proto::conversation_id_str(r.conversation_id)},
                                 {"seq", r.seq}};
      o["attempts"] = r.attempts;
      o["last_error"] = r.last_error;
      o["dead_at"] = r.at_ms;
      arr.emplace_back(std::move(o));
    }
    return json_response(200, json::object{{"dead_letters", std::move(arr)}});
  }

  // Seed 000's configuration-change notifications: {field: "value" | number}.
  ApiResponse backend_config(const AuthContext& a, const std::string& service) {
    auto b = body();
    if (!b) return error_response(b.error());
    std::map<std::string, std::string> fields;
    for (auto& [k, v] : b.value()) {
      if (v.is_string())
        fields[std::string(k)] = std::string(v.as_string());
      else if (v.is_int64() || v.is_uint64())
        fields[std::string(k)] = json::serialize(v);
      else
        return error_response(
            make_error(Errc::bad_request, std::string(k) + " must be a string or an integer"));
    }
    if (auto st = svc_.backend_config(a, service, fields); !st) return error_response(st.error());
    return json_response(202, json::object{{"published", true}});
  }

  ApiResponse broadcast(const AuthContext& a) {
    auto b = body();
    if (!b) return error_response(b.error());
    auto p = payload(b.value());
    if (!p) return error_response(p.error());
    if (auto st = svc_.broadcast(a, std::move(p.value())); !st) return error_response(st.error());
    return json_response(202, json::object{{"queued", true}});
  }

  Service& svc_;
  const ApiOptions& opts_;
  const ApiRequest& req_;
  Route r_;
};

}  // namespace

ApiResponse error_response(const Error& e) {
  ApiResponse r;
  r.status = errc_http_status(e.code);
  r.body = proto::error_body(e);
  if (e.retry_after_s > 0) r.headers["Retry-After"] = std::to_string(e.retry_after_s);
  return r;
}

bool api_hashes_password(std::string_view method, std::string_view path) {
  if (method != "POST") return false;
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path == "/api/v1/login" || path == "/api/v1/users" || path == "/api/v1/password" ||
         path == "/api/v1/admin/users";
}

ApiResponse api_error(int status, const char* code, const std::string& message) {
  ApiResponse r;
  r.status = status;
  json::object inner{{"code", code}, {"message", message}};
  r.body = proto::serialize(json::object{{"error", std::move(inner)}});
  return r;
}

ApiResponse handle_api(Service& svc, const ApiOptions& opts, const ApiRequest& req) {
  auto parsed = boost::urls::parse_origin_form(req.target);
  if (!parsed) return api_error(400, "bad_request", "bad request target");
  Route route;
  auto segs = parsed->segments();  // decoded
  auto it = segs.begin();
  // Expect /api/v1/...
  if (it == segs.end() || *it != "api") return api_error(404, "not_found", "no such endpoint");
  ++it;
  if (it == segs.end() || *it != "v1") return api_error(404, "not_found", "no such endpoint");
  ++it;
  for (; it != segs.end(); ++it) route.seg.push_back(*it);
  while (!route.seg.empty() && route.seg.back().empty()) route.seg.pop_back();  // trailing slash
  for (auto p : parsed->params()) route.query[p.key] = p.has_value ? p.value : std::string();
  // Everything the node stores or echoes is UTF-8: refuse what is not, here at the edge.
  for (auto& seg : route.seg)
    if (!utf8_valid(seg) || seg.find('\0') != std::string::npos)
      return api_error(400, "bad_request", "the path must be UTF-8 without NUL");
  for (auto& [k, v] : route.query)
    if (!utf8_valid(k) || !utf8_valid(v))
      return api_error(400, "bad_request", "query parameters must be UTF-8");
  try {
    return Handler(svc, opts, req, std::move(route)).run();
  } catch (const std::exception& e) {
    return error_response(make_error(Errc::internal, e.what()));
  }
}

ApiResponse handle_healthz(const std::string& node_id, bool bus_connected, bool store_ok) {
  ApiResponse r;
  if (bus_connected && store_ok) {
    r.body = R"({"status":"ok"})";  // the documented answer, exactly
    return r;
  }
  r.status = 503;
  r.body = proto::serialize(json::object{{"status", "degraded"},
                                         {"node_id", node_id},
                                         {"bus", bus_connected ? "connected" : "lost"},
                                         {"store", store_ok ? "ok" : "lost"}});
  return r;
}

ApiResponse handle_metrics(const Metrics& metrics) {
  ApiResponse r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = metrics.render_prometheus();
  return r;
}

}  // namespace converge
