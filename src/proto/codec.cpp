#include "proto/codec.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>
#include <map>
#include <set>

#include "base/utf8.hpp"

namespace converge::proto {

namespace {
Error bad(std::string msg) {
  return make_error(Errc::bad_request, std::move(msg));
}

// Text the node emits must be UTF-8 (a browser drops a WebSocket over one bad text frame).
// Input is checked at the edges; this repairs what an older version stored, or a message that
// quotes input, instead of passing it on.
json::string text(std::string_view s) {
  if (utf8_valid(s)) return json::string(s);
  return json::string(utf8_repair(s));
}
}  // namespace

Result<json::object> parse_object(std::string_view text) {
  boost::system::error_code ec;
  json::parse_options opt;
  opt.max_depth = 32;
  json::value v = json::parse(text, ec, {}, opt);
  if (ec) return make_error(Errc::bad_json, "malformed JSON: " + ec.message());
  if (!v.is_object()) return make_error(Errc::bad_json, "expected a JSON object");
  return std::move(v.as_object());
}

std::string_view strip_token_prefix(std::string_view t) {
  auto starts_nocase = [&](std::string_view p) {
    if (t.size() < p.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(t[i])) != p[i]) return false;
    return true;
  };
  // The auth scheme is case-insensitive (RFC 9110 section 11.1); "Tricolor" is seed 000's.
  for (std::string_view p : {"tricolor", "bearer "})
    if (starts_nocase(p)) {
      t.remove_prefix(p.size());
      break;
    }
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  return t;
}

std::optional<std::string_view> token_from_authorization(std::string_view h) {
  auto starts_nocase = [&](std::string_view p) {
    if (h.size() < p.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(h[i])) != p[i]) return false;
    return true;
  };
  if (!starts_nocase("bearer ") && !starts_nocase("tricolor")) return std::nullopt;
  auto t = strip_token_prefix(h);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  return t;
}

Result<Envelope> parse_envelope(std::string_view text, std::string* id_out) {
  auto obj = parse_object(text);
  if (!obj) return obj.error();
  Envelope env;
  auto& o = obj.value();
  // The id first, so that an error about any other field can still be matched to its request.
  if (auto* id = o.if_contains("id")) {
    if (!id->is_string() && !id->is_int64() && !id->is_uint64())
      return bad("id must be a string or an integer");
    env.id_json = json::serialize(*id);
    if (id_out) *id_out = env.id_json;
  }
  auto* cmd = o.if_contains("cmd");
  if (cmd == nullptr || !cmd->is_string()) return bad("cmd must be a string");
  env.cmd = std::string(cmd->as_string());
  if (auto* tok = o.if_contains("token")) {
    if (!tok->is_string()) return bad("token must be a string");
    env.token = std::string(strip_token_prefix(tok->as_string()));
  }
  if (auto* data = o.if_contains("data")) {
    if (data->is_object())
      env.data = std::move(data->as_object());
    else if (!data->is_null())
      return bad("data must be an object");
  }
  return env;
}

Result<std::string> get_string(const json::object& o, std::string_view key, bool required,
                               std::size_t max_len) {
  auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) {
    if (required) return bad(std::string(key) + " is required");
    return std::string();
  }
  if (!v->is_string()) return bad(std::string(key) + " must be a string");
  auto& s = v->as_string();
  if (s.size() > max_len)
    return make_error(Errc::too_large,
                      std::string(key) + " is longer than " + std::to_string(max_len) + " bytes");
  return std::string(s);
}

Result<int64_t> get_int(const json::object& o, std::string_view key, bool required, int64_t dflt) {
  auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) {
    if (required) return bad(std::string(key) + " is required");
    return dflt;
  }
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(INT64_MAX))
    return static_cast<int64_t>(v->as_uint64());
  if (v->is_double()) {
    double d = v->as_double();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  return bad(std::string(key) + " must be an integer");
}

Result<ConversationId> get_conversation_id(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return bad(std::string(key) + " is required");
  if (v->is_string()) {
    if (auto id = parse_conversation_id(v->as_string())) return *id;
  } else if (v->is_int64() && v->as_int64() > 0) {
    return v->as_int64();
  } else if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
    return static_cast<int64_t>(v->as_uint64());
  }
  return bad(std::string(key) + " must be a conversation id");
}

Result<std::vector<std::string>> get_user_list(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_array())
    return bad(std::string(key) + " must be an array of user ids");
  std::vector<std::string> out;
  for (auto& e : v->as_array()) {
    if (!e.is_string() || !valid_user_id(e.as_string()))
      return bad(std::string(key) + " must be an array of user ids");
    out.emplace_back(e.as_string());
  }
  if (out.size() > 1000) return make_error(Errc::too_large, "at most 1000 members");
  return out;
}

// `mentions`: absent or null = none; else an array of user ids (any case; folded, sorted, each
// once) or ["all"] alone. Who may be mentioned is the writer's check (members, owner for all).
Result<std::vector<std::string>> get_mentions(const json::object& d) {
  std::vector<std::string> out;
  auto* v = d.if_contains("mentions");
  if (v == nullptr || v->is_null()) return out;
  if (!v->is_array()) return bad("mentions must be an array of user ids, or [\"all\"]");
  auto& a = v->as_array();
  if (a.size() > kMaxMentions)
    return make_error(Errc::too_large,
                      "at most " + std::to_string(kMaxMentions) + " mentions per message");
  bool all = false;
  for (auto& e : a) {
    if (e.is_string() && canonical_user_id(e.as_string()) == kMentionAll) {
      all = true;
      continue;
    }
    if (!e.is_string() || !valid_user_id(e.as_string()))
      return bad("mentions must be an array of user ids, or [\"all\"]");
    out.push_back(canonical_user_id(e.as_string()));
  }
  if (all) {
    if (!out.empty()) return bad("mentions: \"all\" goes alone");
    out.emplace_back(kMentionAll);
    return out;
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<SendRequest> parse_send(const json::object& d, std::size_t max_body_bytes) {
  SendRequest r;
  auto conv = get_conversation_id(d, "conversation_id");
  if (!conv) return conv.error();
  r.conversation_id = conv.value();
  auto type = get_string(d, "type", false, 16);
  if (!type) return type.error();
  if (type->empty()) {
    r.type = MessageType::text;
  } else if (auto t = parse_message_type(type.value())) {
    r.type = *t;
  } else {
    return bad("type must be text, image, file or voice");
  }
  auto body = get_string(d, "body", false, max_body_bytes);
  if (!body) return body.error();
  r.body = std::move(body.value());
  auto cmid = get_string(d, "client_msg_id", false, 128);
  if (!cmid) return cmid.error();
  r.client_msg_id = std::move(cmid.value());
  auto fid = get_string(d, "file_id", false, 128);
  if (!fid) return fid.error();
  r.file_id = std::move(fid.value());
  auto mentions = get_mentions(d);
  if (!mentions) return mentions.error();
  r.mentions = std::move(mentions.value());
  if (r.type == MessageType::text) {
    if (r.body.empty()) return bad("a text message needs a body");
    if (!r.file_id.empty()) return bad("a text message takes no file_id");
  } else if (r.file_id.empty()) {
    return bad(std::string("a ") + std::string(message_type_name(r.type)) +
               " message needs a file_id (upload it first)");
  }
  return r;
}

Result<SeqMap> parse_seqs(const json::object& d) {
  SeqMap out;
  auto* v = d.if_contains("seqs");
  if (v == nullptr || v->is_null()) return out;
  if (!v->is_object()) return bad("seqs must be an object of conversation_id: seq");
  for (auto& [k, s] : v->as_object()) {
    auto id = parse_conversation_id(k);
    if (!id) return bad("seqs: bad conversation id " + std::string(k));
    int64_t seq = -1;
    if (s.is_int64())
      seq = s.as_int64();
    else if (s.is_uint64() && s.as_uint64() <= static_cast<uint64_t>(INT64_MAX))
      seq = static_cast<int64_t>(s.as_uint64());
    if (seq < 0) return bad("seqs: seq must be a non-negative integer");
    out[*id] = seq;
  }
  if (out.size() > 100000) return make_error(Errc::too_large, "too many seqs");
  return out;
}

Result<SyncRequest> parse_sync(const json::object& d) {
  SyncRequest r;
  auto limit = get_int(d, "limit", false, 0);
  if (!limit) return limit.error();
  if (limit.value() < 0) return bad("limit must be positive");
  r.limit = limit.value();
  auto cursor = get_string(d, "cursor", false, 64);
  if (!cursor) return cursor.error();
  r.cursor = std::move(cursor.value());
  return r;
}

Result<CreateConversationRequest> parse_create_conversation(const json::object& b) {
  CreateConversationRequest r;
  auto type = get_string(b, "type", true, 16);
  if (!type) return type.error();
  auto t = parse_conversation_type(type.value());
  if (!t) return bad("type must be direct or group");
  r.type = *t;
  auto members = get_user_list(b, "members");
  if (!members) return members.error();
  r.members = std::move(members.value());
  auto name = get_string(b, "name", false, 256);
  if (!name) return name.error();
  r.name = std::move(name.value());
  return r;
}

std::string conversation_id_str(ConversationId id) {
  return std::to_string(id);
}

json::object file_json(const FileMeta& f) {
  json::object o;
  o["file_id"] = f.id;
  o["name"] = text(f.name);
  o["size"] = f.size;
  o["mime"] = text(f.mime);
  o["url"] = "/api/v1/files/" + f.id;
  return o;
}

json::object message_json(const Message& m) {
  json::object o;
  o.reserve(10);
  o["conversation_id"] = conversation_id_str(m.conversation_id);
  o["seq"] = m.seq;
  o["publisher_id"] = m.publisher_id;
  o["publisher_name"] = text(m.publisher_name);
  o["type"] = message_type_name(m.type);
  o["body"] = text(m.body);
  o["client_msg_id"] = text(m.client_msg_id);
  o["ts"] = m.ts_ms;
  if (m.file) o["file"] = file_json(*m.file);
  if (!m.mentions.empty()) {
    json::array a;
    for (auto& u : m.mentions) a.emplace_back(u);
    o["mentions"] = std::move(a);
  }
  return o;
}

json::object conversation_json(const Conversation& c, std::string_view for_user) {
  json::object o;
  o["id"] = conversation_id_str(c.id);
  o["conversation_id"] = conversation_id_str(c.id);
  o["type"] = conversation_type_name(c.type);
  o["name"] = text(c.name);
  o["owner"] = c.owner;
  json::array members;
  bool muted = false;
  for (auto& m : c.members) {
    members.emplace_back(m.user_id);
    if (m.user_id == for_user) muted = m.muted;
  }
  o["members"] = std::move(members);
  json::object roles;
  roles.reserve(c.members.size());
  for (auto& m : c.members)
    roles[m.user_id] = role_name(m.user_id == c.owner ? Role::owner : m.role);
  o["roles"] = std::move(roles);
  o["notice"] = text(c.notice);
  o["join_policy"] = join_policy_name(c.join_policy);
  o["last_seq"] = c.last_seq;
  o["muted"] = muted;
  o["created_at"] = c.created_at_ms;
  return o;
}

json::object request_json(const Request& r) {
  json::object o;
  o["id"] = r.id;
  o["kind"] = request_kind_name(r.kind);
  switch (r.kind) {
    case RequestKind::application:
      o["application_id"] = r.id;
      break;
    case RequestKind::invitation:
      o["invitation_id"] = r.id;
      o["inviter_id"] = r.from_id;
      break;
    case RequestKind::friend_request:
      o["request_id"] = r.id;
      o["from"] = r.from_id;
      o["to"] = r.user_id;
      break;
  }
  if (r.conversation_id != 0) o["conversation_id"] = conversation_id_str(r.conversation_id);
  o["user_id"] = r.user_id;
  o["from_id"] = r.from_id;
  o["text"] = text(r.text);
  o["status"] = request_status_name(r.status);
  o["decided_by"] = r.decided_by;
  o["created_at"] = r.created_at_ms;
  o["decided_at"] = r.decided_at_ms;
  o["expires_at"] = r.expires_at_ms;
  return o;
}

json::object user_json(const User& u) {
  json::object o;
  o["user_id"] = u.id;
  o["name"] = text(u.name);
  o["admin"] = u.is_admin;
  o["created_at"] = u.created_at_ms;
  return o;
}

json::object seqs_json(const SeqMap& seqs) {
  json::object o;
  for (auto& [c, s] : seqs) o[conversation_id_str(c)] = s;
  return o;
}

json::object sync_page_json(const SyncPage& page) {
  json::object o;
  json::array msgs;
  msgs.reserve(page.messages.size());
  for (auto& m : page.messages) msgs.emplace_back(message_json(m));
  o["messages"] = std::move(msgs);
  o["more"] = page.more;
  if (page.more) o["next_cursor"] = page.next_cursor;
  return o;
}

std::string serialize(const json::object& o) {
  return json::serialize(o);
}

std::string frame(std::string_view cmd, std::string_view id_json, const json::object& data) {
  // Built by hand around the serialized data so that `id` keeps its exact original form.
  std::string out;
  out.reserve(64);
  out += "{\"cmd\":";
  out += json::serialize(json::string(cmd));
  if (!id_json.empty()) {
    out += ",\"id\":";
    out += id_json;
  }
  out += ",\"data\":";
  out += json::serialize(data);
  out += '}';
  return out;
}

namespace {

// Appends `s` as a JSON string. Text that needs no escape (the common case) is copied as is;
// anything else goes through Boost.JSON's serializer.
void append_string(std::string& out, std::string_view s) {
  bool plain = true;
  bool high = false;
  for (unsigned char ch : s) {
    if (ch < 0x20 || ch == '"' || ch == '\\') {
      plain = false;
      break;
    }
    high |= ch >= 0x80;
  }
  if ((high || !plain) && !utf8_valid(s)) {
    out += json::serialize(json::string(utf8_repair(s)));
    return;
  }
  if (plain) {
    out += '"';
    out += s;
    out += '"';
  } else {
    out += json::serialize(json::string_view(s.data(), s.size()));
  }
}

void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_field(std::string& out, std::string_view key, std::string_view value) {
  out += key;
  append_string(out, value);
}

void append_field(std::string& out, std::string_view key, int64_t value) {
  out += key;
  append_int(out, value);
}

}  // namespace

void append_message_json(std::string& out, const Message& m) {
  out += R"({"conversation_id":")";
  append_int(out, m.conversation_id);
  out += '"';
  append_field(out, R"(,"seq":)", m.seq);
  append_field(out, R"(,"publisher_id":)", m.publisher_id);
  append_field(out, R"(,"publisher_name":)", m.publisher_name);
  append_field(out, R"(,"type":)", message_type_name(m.type));
  append_field(out, R"(,"body":)", m.body);
  append_field(out, R"(,"client_msg_id":)", m.client_msg_id);
  append_field(out, R"(,"ts":)", m.ts_ms);
  if (m.file) {
    out += R"(,"file":)";
    out += json::serialize(file_json(*m.file));
  }
  if (!m.mentions.empty()) {
    out += R"(,"mentions":[)";
    for (std::size_t i = 0; i < m.mentions.size(); ++i) {
      if (i > 0) out += ',';
      append_string(out, m.mentions[i]);
    }
    out += ']';
  }
  out += '}';
}

std::string frame_msg(const Message& m) {
  std::string out;
  out.reserve(192 + m.body.size() + m.publisher_name.size());
  out += R"({"cmd":"msg","data":)";
  append_message_json(out, m);
  out += '}';
  return out;
}

namespace {

// {"messages":[...],"more":...,"next_cursor":...}, written straight into `out` (a page of a
// thousand messages is a quarter of a megabyte: no document is built for it).
void append_sync_page(std::string& out, const SyncPage& page) {
  std::size_t bytes = 64;
  for (auto& m : page.messages) bytes += 200 + m.body.size() + m.publisher_name.size();
  out.reserve(out.size() + bytes);
  out += R"({"messages":[)";
  for (std::size_t i = 0; i < page.messages.size(); ++i) {
    if (i > 0) out += ',';
    append_message_json(out, page.messages[i]);
  }
  out += R"(],"more":)";
  out += page.more ? "true" : "false";
  if (page.more) append_field(out, R"(,"next_cursor":)", page.next_cursor);
  out += '}';
}

}  // namespace

std::string sync_page_body(const SyncPage& page) {
  std::string out;
  append_sync_page(out, page);
  return out;
}

std::string frame_sync(std::string_view id_json, const SyncPage& page) {
  std::string out = R"({"cmd":"sync")";
  if (!id_json.empty()) {
    out += R"(,"id":)";
    out += id_json;
  }
  out += R"(,"data":)";
  append_sync_page(out, page);
  out += '}';
  return out;
}

std::string frame_ack(std::string_view id_json, const SendAck& a) {
  std::string out;
  out.reserve(128 + a.client_msg_id.size());
  out += R"({"cmd":"ack")";
  if (!id_json.empty()) {
    out += R"(,"id":)";
    out += id_json;
  }
  out += R"(,"data":{"conversation_id":")";
  append_int(out, a.conversation_id);
  out += '"';
  append_field(out, R"(,"seq":)", a.seq);
  append_field(out, R"(,"client_msg_id":)", a.client_msg_id);
  append_field(out, R"(,"ts":)", a.ts_ms);
  if (a.duplicate) out += R"(,"duplicate":true)";
  out += "}}";
  return out;
}

std::string frame_error(std::string_view id_json, const Error& err) {
  const Error e = public_error(err);
  json::object d;
  d["code"] = errc_name(e.code);
  d["message"] = text(e.message);
  if (e.retry_after_s > 0) d["retry_after_s"] = e.retry_after_s;
  return frame("error", id_json, d);
}

std::string error_body(const Error& err) {
  const Error e = public_error(err);
  json::object inner;
  inner["code"] = errc_name(e.code);
  inner["message"] = text(e.message);
  json::object o;
  o["error"] = std::move(inner);
  return json::serialize(o);
}

}  // namespace converge::proto

namespace converge::proto {

namespace {
std::string str(const json::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}
int64_t i64(const json::object& o, std::string_view k) {
  auto* v = o.if_contains(k);
  if (!v) return 0;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  if (v->is_string()) return parse_conversation_id(v->as_string()).value_or(0);
  return 0;
}
}  // namespace

Result<Message> parse_message_frame(std::string_view frame) {
  auto env = parse_object(frame);
  if (!env) return env.error();
  auto* d = env->if_contains("data");
  if (!d || !d->is_object()) return bad("a message frame needs data");
  auto& o = d->as_object();
  Message m;
  m.conversation_id = i64(o, "conversation_id");
  m.seq = i64(o, "seq");
  if (m.conversation_id <= 0 || m.seq <= 0) return bad("a message frame needs its ids");
  m.publisher_id = str(o, "publisher_id");
  m.publisher_name = str(o, "publisher_name");
  m.type = parse_stored_message_type(str(o, "type")).value_or(MessageType::text);
  m.body = str(o, "body");
  m.client_msg_id = str(o, "client_msg_id");
  m.ts_ms = i64(o, "ts");
  if (auto* f = o.if_contains("file"); f && f->is_object()) {
    auto& fo = f->as_object();
    FileMeta fm;
    fm.id = str(fo, "file_id");
    fm.name = str(fo, "name");
    fm.mime = str(fo, "mime");
    fm.size = i64(fo, "size");
    m.file = std::move(fm);
  }
  if (auto* ms = o.if_contains("mentions"); ms && ms->is_array())
    for (auto& u : ms->as_array())
      if (u.is_string()) m.mentions.emplace_back(u.as_string());
  return m;
}

std::string notice_envelope(const Notice& n) {
  json::object o;
  switch (n.kind) {
    case Notice::Kind::event:
    case Notice::Kind::admin:
    case Notice::Kind::broadcast: {
      o["cmd"] = n.kind == Notice::Kind::event   ? (n.event_cmd.empty() ? "event" : n.event_cmd)
                 : n.kind == Notice::Kind::admin ? "admin"
                                                 : "broadcast";
      boost::system::error_code ec;
      json::value data = json::parse(n.payload_json, ec);
      o["data"] = ec ? json::value(json::object{}) : std::move(data);
      if (n.kind != Notice::Kind::broadcast) o["user_id"] = n.user_id;
      break;
    }
    case Notice::Kind::conversation: {
      o["cmd"] = "conversation";
      auto data = conversation_json(n.conversation, "");
      data["change"] = n.change;
      if (!n.event_json.empty()) {
        boost::system::error_code ec;
        json::value ev = json::parse(n.event_json, ec);
        if (!ec && ev.is_object()) data["event"] = std::move(ev);
      }
      data["members_version"] = n.conversation.members_version;
      // Every member's own flag, so that each node can tell its recipients theirs.
      json::array muted;
      for (auto& m : n.conversation.members)
        if (m.muted) muted.emplace_back(m.user_id);
      data["muted_by"] = std::move(muted);
      o["data"] = std::move(data);
      json::array users;
      for (auto& u : n.user_ids) users.emplace_back(u);
      o["user_ids"] = std::move(users);
      break;
    }
    case Notice::Kind::node:
      o["cmd"] = "node";
      o["data"] =
          json::object{{"node_id", n.user_id},         {"started_at", n.started_at_ms},
                       {"connections", n.connections}, {"address", n.address},
                       {"cpu_percent", n.cpu_percent}, {"publish_losses", n.publish_losses}};
      break;
    case Notice::Kind::revoke:
      o["cmd"] = "revoke";
      o["data"] = json::object{{"user_id", n.user_id},
                               {"token_hash", n.token_hash},
                               {"keep_token_hash", n.keep_token_hash}};
      break;
  }
  return json::serialize(o);
}

Result<std::shared_ptr<Notice>> parse_notice_envelope(std::string_view text) {
  auto env = parse_object(text);
  if (!env) return env.error();
  auto cmd = str(env.value(), "cmd");
  auto* dv = env->if_contains("data");
  if (!dv || !dv->is_object()) return bad("a notice needs data");
  auto& d = dv->as_object();
  auto n = std::make_shared<Notice>();
  const bool workflow = cmd == "application" || cmd == "invitation" || cmd == "friend_request";
  if (cmd == "event" || cmd == "broadcast" || cmd == "admin" || workflow) {
    n->kind = cmd == "event" || workflow ? Notice::Kind::event
              : cmd == "admin"           ? Notice::Kind::admin
                                         : Notice::Kind::broadcast;
    if (workflow) n->event_cmd = std::string(cmd);
    n->user_id = str(env.value(), "user_id");
    if (n->kind != Notice::Kind::broadcast && n->user_id.empty())
      return bad("an event or admin notice needs user_id");
    n->payload_json = json::serialize(d);
  } else if (cmd == "conversation") {
    n->kind = Notice::Kind::conversation;
    n->change = str(d, "change");
    if (auto* ev = d.if_contains("event"); ev && ev->is_object())
      n->event_json = json::serialize(*ev);
    auto& c = n->conversation;
    c.id = i64(d, "id");
    c.type = parse_conversation_type(str(d, "type")).value_or(ConversationType::group);
    c.name = str(d, "name");
    c.owner = str(d, "owner");
    c.notice = str(d, "notice");
    c.join_policy = parse_join_policy(str(d, "join_policy")).value_or(JoinPolicy::approval);
    std::map<std::string, Role, std::less<>> roles;
    if (auto* rs = d.if_contains("roles"); rs && rs->is_object())
      for (auto& [k, v] : rs->as_object())
        if (v.is_string())
          if (auto r = parse_role(v.as_string())) roles[std::string(k)] = *r;
    c.last_seq = i64(d, "last_seq");
    c.created_at_ms = i64(d, "created_at");
    c.members_version = i64(d, "members_version");
    std::set<std::string> muted;
    if (auto* mb = d.if_contains("muted_by"); mb && mb->is_array())
      for (auto& u : mb->as_array())
        if (u.is_string()) muted.insert(std::string(u.as_string()));
    if (auto* ms = d.if_contains("members"); ms && ms->is_array())
      for (auto& u : ms->as_array())
        if (u.is_string()) {
          std::string id(u.as_string());
          bool m = muted.count(id) > 0;
          auto r = roles.find(id);
          c.members.push_back(
              Member{std::move(id), m, r == roles.end() ? Role::member : r->second});
        }
    if (auto* us = env->if_contains("user_ids"); us && us->is_array())
      for (auto& u : us->as_array())
        if (u.is_string()) n->user_ids.emplace_back(u.as_string());
  } else if (cmd == "node") {
    n->kind = Notice::Kind::node;
    n->user_id = str(d, "node_id");
    n->started_at_ms = i64(d, "started_at");
    n->connections = i64(d, "connections");
    n->address = str(d, "address");
    n->cpu_percent = i64(d, "cpu_percent");
    n->publish_losses = i64(d, "publish_losses");
    if (n->user_id.empty()) return bad("a node notice needs node_id");
  } else if (cmd == "revoke") {
    n->kind = Notice::Kind::revoke;
    n->user_id = str(d, "user_id");
    n->token_hash = str(d, "token_hash");
    n->keep_token_hash = str(d, "keep_token_hash");
  } else {
    return bad("unknown notice " + std::string(utf8_truncate(cmd, 32)));
  }
  return n;
}

}  // namespace converge::proto
