#include "service/rooms.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>

#include "base/clock.hpp"
#include "base/process.hpp"
#include "base/utf8.hpp"
#include "bus/bus.hpp"
#include "proto/codec.hpp"
#include "service/hub.hpp"
#include "service/service.hpp"

namespace converge {

namespace json = boost::json;

namespace {

constexpr uint8_t kAudio = 1;
constexpr std::size_t kInHeader = 1 + 4 + 2;       // kind, room, seq
constexpr std::size_t kOutHeader = 1 + 4 + 4 + 2;  // kind, room, sender, seq
constexpr std::size_t kNameMax = 256;

uint32_t be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void put32(std::string& s, std::size_t at, uint32_t v) {
  s[at] = static_cast<char>(v >> 24);
  s[at + 1] = static_cast<char>(v >> 16);
  s[at + 2] = static_cast<char>(v >> 8);
  s[at + 3] = static_cast<char>(v);
}

std::optional<RoomId> parse_room_key(std::string_view key) {
  if (!key.starts_with("room.")) return std::nullopt;
  key.remove_prefix(5);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(key.data(), key.data() + key.size(), v);
  if (ec != std::errc{} || p != key.data() + key.size() || v == 0 || v > UINT32_MAX)
    return std::nullopt;
  return static_cast<RoomId>(v);
}

std::string frame_text(const char* cmd, const std::string& data_json) {
  std::string f = R"({"cmd":")";
  f += cmd;
  f += R"(","data":)";
  f += data_json;
  f += '}';
  return f;
}

// What the older connection of a member who joined again from another one is told: it is out.
std::shared_ptr<const std::string> moved_frame(RoomId id, const std::string& user,
                                               uint32_t member_no) {
  json::object ev{
      {"room_id", id}, {"user_id", user}, {"member_no", member_no}, {"reason", "moved"}};
  return std::make_shared<const std::string>(frame_text("room.left", json::serialize(ev)));
}

}  // namespace

Rooms::Rooms(RoomsOptions opts, Service& svc, Bus& bus, Hub& hub, Metrics& metrics)
    : opts_(opts), svc_(svc), bus_(bus), hub_(hub), metrics_(metrics) {
  for (int i = 0; i < std::max(1, hub_.shard_count()); ++i)
    shards_.push_back(std::make_unique<ShardState>());
}

Rooms::~Rooms() {
  stop();
}

Status Rooms::start(bool sole_node) {
  const std::string node = bus_.node_id();
  auto st = svc_.write([&](StoreSession& s) -> Status {
    if (sole_node) return s.room_members_clear();
    auto gone = s.room_leave_node(node);  // a fixed node id back after a crash
    if (!gone) return gone.error();
    return ok_status();
  });
  if (!st) return st;
  sweeper_ = std::thread([this] {
    name_this_thread("rooms");
    sweep();
  });
  return ok_status();
}

void Rooms::stop() {
  {
    std::lock_guard lk(sweep_mu_);
    stopping_ = true;
  }
  sweep_cv_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
}

// ------------------------------------------------------------------------------------- HTTP

Result<Room> Rooms::create(const AuthContext& who, std::string name, int64_t max_members) {
  if (name.size() > kNameMax) return make_error(Errc::too_large, "name is longer than 256 bytes");
  if (!valid_display_name(name))
    return make_error(Errc::bad_request, "name has control or bidirectional-override characters");
  if (name.empty()) name = "room";
  if (max_members < 1 || max_members > opts_.max_members_cap)
    return make_error(Errc::bad_request,
                      "max_members is 1 to " + std::to_string(opts_.max_members_cap));
  Room r;
  r.name = std::move(name);
  r.owner = who.user_id;
  r.max_members = max_members;
  r.created_at_ms = now_ms();
  auto st = svc_.write([&](StoreSession& s) -> Status {
    auto id = s.room_create(r);
    if (!id) return id.error();
    r.id = id.value();
    return ok_status();
  });
  if (!st) return st.error();
  return r;
}

Result<std::vector<Room>> Rooms::list(const AuthContext& /*who*/, RoomId after, int64_t limit) {
  if (limit < 1 || limit > 1000) return make_error(Errc::bad_request, "limit is 1 to 1000");
  auto s = svc_.lease();
  return s->rooms_list(after, limit);
}

Result<RoomJoinView> Rooms::get(const AuthContext& /*who*/, RoomId id) {
  RoomJoinView v;
  {
    auto s = svc_.lease();
    auto r = s->room_get(id);
    if (!r) return r.error();
    if (!r.value()) return make_error(Errc::not_found, "no such room");
    v.room = std::move(*r.value());
    auto ms = s->room_members(id);
    if (!ms) return ms.error();
    for (auto& m : ms.value())
      v.members.push_back(RoomJoinView::Member{m.user_id, m.member_no, m.muted, false});
  }
  std::lock_guard lk(mu_);
  if (auto it = rooms_.find(id); it != rooms_.end())
    for (auto& m : v.members) {
      auto lm = it->second.members.find(m.user_id);
      m.speaking = lm != it->second.members.end() ? lm->second.speaking
                                                  : it->second.remote_speaking.count(m.user_id) > 0;
    }
  return v;
}

Status Rooms::remove_room(const AuthContext& who, RoomId id) {
  auto st = svc_.write([&](StoreSession& s) -> Status {
    auto r = s.room_get(id);
    if (!r) return r.error();
    if (!r.value()) return make_error(Errc::not_found, "no such room");
    if (r.value()->owner != who.user_id)
      return make_error(Errc::forbidden, "only the room's owner deletes it");
    return s.room_delete(id);
  });
  if (!st) return st;
  publish_event(id, "room.deleted", json::serialize(json::object{{"room_id", id}}));
  return ok_status();
}

// ------------------------------------------------------------------------------ connections

void Rooms::open_connection(int shard, int64_t conn, RoomSink* sink) {
  shards_[static_cast<std::size_t>(shard)]->live[conn] = sink;
}

void Rooms::close_connection(int shard, int64_t conn) {
  auto& sh = *shards_[static_cast<std::size_t>(shard)];
  sh.live.erase(conn);
  for (auto& [_, v] : sh.rooms) std::erase_if(v, [conn](const auto& p) { return p.first == conn; });
  std::set<RoomId> rooms;
  std::string user;
  {
    std::lock_guard lk(mu_);
    if (auto it = conn_rooms_.find(conn); it != conn_rooms_.end()) rooms = std::move(it->second);
    conn_rooms_.erase(conn);
    if (auto it = conn_users_.find(conn); it != conn_users_.end()) user = std::move(it->second);
    conn_users_.erase(conn);
    for (auto id : rooms) {
      auto r = rooms_.find(id);
      if (r == rooms_.end()) continue;
      auto m = r->second.members.find(user);
      if (m != r->second.members.end() && m->second.conn == conn) drop_local_locked(id, user);
    }
  }
  if (rooms.empty()) return;
  // The store's rows: on the work pool (this is a network thread).
  const std::string node = bus_.node_id();
  svc_.run_blocking([this, rooms = std::move(rooms), user, node, conn] {
    for (auto id : rooms) {
      std::optional<RoomMember> row;
      auto st = svc_.write([&](StoreSession& s) -> Status {
        auto r = s.room_leave(id, user, node, conn);
        if (!r) return r.error();
        row = std::move(r.value());
        return ok_status();
      });
      if (!st) spdlog::warn("rooms: {} leaving room {}: {}", user, id, st.error().message);
      if (row) left(*row, "closed");
    }
  });
}

// ---------------------------------------------------------------------------------- commands

Result<RoomJoinView> Rooms::join(const AuthContext& who, RoomId id, int shard, int64_t conn) {
  StoreSession::RoomJoin joined;
  const std::string node = bus_.node_id();
  auto st = svc_.write([&](StoreSession& s) -> Status {
    auto r = s.room_join(id, who.user_id, node, conn, now_ms());
    if (!r) return r.error();
    joined = std::move(r.value());
    return ok_status();
  });
  if (!st) return st.error();
  {
    std::lock_guard lk(mu_);
    LocalMember m;
    m.conn = conn;
    m.shard = shard;
    m.member_no = joined.member.member_no;
    m.muted = joined.member.muted;
    m.tokens = throttle_burst();  // a joiner starts with a full bucket
    m.tokens_at_us = mono_us();
    add_local_locked(id, who.user_id, m);
    conn_rooms_[conn].insert(id);
    conn_users_[conn] = who.user_id;
  }
  json::object ev{{"room_id", id},
                  {"user_id", who.user_id},
                  {"member_no", joined.member.member_no},
                  {"muted", joined.member.muted}};
  publish_event(id, "room.joined", json::serialize(ev), conn);
  auto v = get(who, id);
  if (!v) return v.error();
  v->me = joined.member.member_no;
  return v;
}

Status Rooms::leave(const AuthContext& who, RoomId id, int64_t conn) {
  std::optional<RoomMember> row;
  const std::string node = bus_.node_id();
  auto st = svc_.write([&](StoreSession& s) -> Status {
    auto r = s.room_leave(id, who.user_id, node, conn);
    if (!r) return r.error();
    row = std::move(r.value());
    return ok_status();
  });
  if (!st) return st;
  if (!row) return make_error(Errc::not_found, "not in this room");
  {
    std::lock_guard lk(mu_);
    drop_local_locked(id, who.user_id);
    if (auto it = conn_rooms_.find(conn); it != conn_rooms_.end()) it->second.erase(id);
  }
  left(*row, "left");
  return ok_status();
}

void Rooms::left(const RoomMember& row, const char* reason) {
  json::object ev{{"room_id", row.room_id},
                  {"user_id", row.user_id},
                  {"member_no", row.member_no},
                  {"reason", reason}};
  publish_event(row.room_id, "room.left", json::serialize(ev));
}

Status Rooms::mute(const AuthContext& who, RoomId id, int64_t conn, bool muted) {
  {
    std::lock_guard lk(mu_);
    auto r = rooms_.find(id);
    bool in = false;
    if (r != rooms_.end())
      if (auto m = r->second.members.find(who.user_id); m != r->second.members.end())
        in = m->second.conn == conn;
    if (!in) return make_error(Errc::not_found, "not in this room");
  }
  auto st = svc_.write([&](StoreSession& s) { return s.room_set_muted(id, who.user_id, muted); });
  if (!st) return st;
  publish_event(
      id, "room.muted",
      json::serialize(json::object{
          {"room_id", id}, {"user_id", who.user_id}, {"muted", muted}, {"by", who.user_id}}));
  return ok_status();
}

Status Rooms::mute_member(const AuthContext& who, RoomId id, const std::string& user_in,
                          bool muted) {
  const std::string user = canonical_user_id(user_in);
  auto st = svc_.write([&](StoreSession& s) -> Status {
    auto r = s.room_get(id);
    if (!r) return r.error();
    if (!r.value()) return make_error(Errc::not_found, "no such room");
    if (r.value()->owner != who.user_id)
      return make_error(Errc::forbidden, "only the room's owner mutes others");
    return s.room_set_muted(id, user, muted);
  });
  if (!st) return st;
  publish_event(id, "room.muted",
                json::serialize(json::object{
                    {"room_id", id}, {"user_id", user}, {"muted", muted}, {"by", who.user_id}}));
  return ok_status();
}

Status Rooms::remove_member(const AuthContext& who, RoomId id, const std::string& user_in) {
  const std::string user = canonical_user_id(user_in);
  if (user == who.user_id) return make_error(Errc::bad_request, "the owner leaves, not removes");
  std::optional<RoomMember> row;
  auto st = svc_.write([&](StoreSession& s) -> Status {
    auto r = s.room_get(id);
    if (!r) return r.error();
    if (!r.value()) return make_error(Errc::not_found, "no such room");
    if (r.value()->owner != who.user_id)
      return make_error(Errc::forbidden, "only the room's owner removes others");
    auto gone = s.room_remove(id, user);
    if (!gone) return gone.error();
    row = std::move(gone.value());
    return ok_status();
  });
  if (!st) return st;
  if (row) left(*row, "removed");
  return ok_status();
}

Status Rooms::send(const AuthContext& who, RoomId id, int64_t conn, const std::string& to_in,
                   std::string body_json) {
  if (body_json.size() > opts_.max_message_bytes)
    return make_error(Errc::too_large,
                      "body is longer than " + std::to_string(opts_.max_message_bytes) + " bytes");
  {
    std::lock_guard lk(mu_);
    auto r = rooms_.find(id);
    bool in = false;
    if (r != rooms_.end())
      if (auto m = r->second.members.find(who.user_id); m != r->second.members.end())
        in = m->second.conn == conn;
    if (!in) return make_error(Errc::not_found, "not in this room");
  }
  std::string to;
  if (!to_in.empty()) {
    if (!valid_user_id(to_in)) return make_error(Errc::bad_request, "to is not a user id");
    to = canonical_user_id(to_in);
    auto s = svc_.lease();
    auto ms = s->room_members(id);
    if (!ms) return ms.error();
    if (std::none_of(ms->begin(), ms->end(), [&](const RoomMember& m) { return m.user_id == to; }))
      return make_error(Errc::not_found, to + " is not in this room");
  }
  std::string data = R"({"room_id":)" + std::to_string(id) + R"(,"from":)" +
                     json::serialize(json::string(who.user_id));
  if (!to.empty()) data += R"(,"to":)" + json::serialize(json::string(to));
  data += R"(,"body":)" + body_json + "}";
  publish_event(id, "room.message", data, to.empty() ? conn : 0, to);
  return ok_status();
}

// ------------------------------------------------------------------------------ local view

void Rooms::add_local_locked(RoomId id, const std::string& user, const LocalMember& m) {
  auto [it, fresh_room] = rooms_.try_emplace(id);
  auto& room = it->second;
  if (room.shard_members.empty()) room.shard_members.assign(shards_.size(), 0);
  if (auto old = room.members.find(user); old != room.members.end()) {
    // The same user from a newer connection here: the older one is out of the room.
    const int64_t old_conn = old->second.conn;
    const int old_shard = old->second.shard;
    --room.shard_members[static_cast<std::size_t>(old_shard)];
    if (auto c = conn_rooms_.find(old_conn); c != conn_rooms_.end()) c->second.erase(id);
    auto ev = moved_frame(id, user, old->second.member_no);
    room.members.erase(old);
    metrics_.voice_members.add(-1);
    hub_.post(old_shard, [this, old_shard, id, old_conn, ev] {
      auto& sh = *shards_[static_cast<std::size_t>(old_shard)];
      std::erase_if(sh.rooms[id], [old_conn](const auto& p) { return p.first == old_conn; });
      if (auto live = sh.live.find(old_conn); live != sh.live.end()) live->second->room_event(ev);
    });
  }
  room.members[user] = m;
  ++room.shard_members[static_cast<std::size_t>(m.shard)];
  room.remote_speaking.erase(user);
  metrics_.voice_members.add(1);
  if (room.members.size() == 1) bus_.bind_transient(room_key(id), true);
  hub_.post(m.shard, [this, shard = m.shard, id, conn = m.conn] {
    auto& sh = *shards_[static_cast<std::size_t>(shard)];
    auto live = sh.live.find(conn);
    if (live == sh.live.end()) return;  // closed meanwhile
    auto& v = sh.rooms[id];
    if (std::none_of(v.begin(), v.end(), [conn](const auto& p) { return p.first == conn; }))
      v.emplace_back(conn, live->second);
  });
}

void Rooms::drop_local_locked(RoomId id, const std::string& user) {
  auto it = rooms_.find(id);
  if (it == rooms_.end()) return;
  auto m = it->second.members.find(user);
  if (m == it->second.members.end()) return;
  const int shard = m->second.shard;
  const int64_t conn = m->second.conn;
  --it->second.shard_members[static_cast<std::size_t>(shard)];
  it->second.members.erase(m);
  metrics_.voice_members.add(-1);
  if (auto c = conn_rooms_.find(conn); c != conn_rooms_.end()) c->second.erase(id);
  hub_.post(shard, [this, shard, id, conn] {
    auto& rooms = shards_[static_cast<std::size_t>(shard)]->rooms;
    auto r = rooms.find(id);
    if (r == rooms.end()) return;
    std::erase_if(r->second, [conn](const auto& p) { return p.first == conn; });
    if (r->second.empty()) rooms.erase(r);
  });
  if (it->second.members.empty()) {
    bus_.bind_transient(room_key(id), false);
    rooms_.erase(it);
  }
}

void Rooms::apply_event(RoomId id, std::string_view cmd, const std::string& user, bool flag,
                        uint32_t member_no) {
  std::lock_guard lk(mu_);
  auto it = rooms_.find(id);
  if (it == rooms_.end()) return;
  auto& room = it->second;
  if (cmd == "room.deleted") {
    std::vector<std::string> all;
    for (auto& [u, _] : room.members) all.push_back(u);
    for (auto& u : all) drop_local_locked(id, u);
    return;
  }
  auto m = room.members.find(user);
  if (cmd == "room.muted") {
    if (m != room.members.end()) m->second.muted = flag;
  } else if (cmd == "room.left") {
    room.remote_speaking.erase(user);
    // Ours only if it is the member we hold (a rejoin elsewhere left a stale row behind).
    if (m != room.members.end() && (member_no == 0 || m->second.member_no == member_no))
      drop_local_locked(id, user);
  } else if (cmd == "room.speaking") {
    if (m == room.members.end()) {
      if (flag)
        room.remote_speaking.insert(user);
      else
        room.remote_speaking.erase(user);
    }
  } else if (cmd == "room.joined") {
    // The user joined from another node: the connection here is no longer theirs in the room.
    if (m != room.members.end() && flag /* remote */) drop_local_locked(id, user);
  }
}

void Rooms::publish_event(RoomId id, const char* cmd, const std::string& data_json,
                          int64_t except_conn, const std::string& only_user) {
  auto frame = std::make_shared<const std::string>(frame_text(cmd, data_json));
  // The local view first (who is muted or gone), then the members here, then the other nodes.
  auto d = proto::parse_object(data_json);
  if (d) {
    auto field = [&](const char* k) -> std::string {
      auto* v = d->if_contains(k);
      return v && v->is_string() ? std::string(v->as_string()) : std::string();
    };
    bool flag = false;
    if (auto* v = d->if_contains("muted"); v && v->is_bool()) flag = v->as_bool();
    if (auto* v = d->if_contains("speaking"); v && v->is_bool()) flag = v->as_bool();
    uint32_t no = 0;
    if (auto* v = d->if_contains("member_no"); v && v->is_number())
      no = static_cast<uint32_t>(v->to_number<int64_t>());
    // Told first (a removed member hears of it), then applied.
    fan_out_event(id, frame, except_conn, only_user);
    std::string_view c = cmd;
    if (c == "room.left" || c == "room.muted" || c == "room.deleted")
      apply_event(id, c, field("user_id"), flag, no);
  } else {
    fan_out_event(id, frame, except_conn, only_user);
  }
  // Other nodes: the same frame, told apart from audio by its first byte ('{').
  std::string wire;
  if (!only_user.empty()) {
    // Carried with the addressee, so that the other nodes need not parse the data.
    wire =
        R"({"to_user":)" + json::serialize(json::string(only_user)) + R"(,"frame":)" + *frame + "}";
    bus_.publish_transient(room_key(id), std::make_shared<const std::string>(std::move(wire)));
  } else {
    bus_.publish_transient(room_key(id), frame);
  }
}

void Rooms::fan_out_event(RoomId id, std::shared_ptr<const std::string> frame, int64_t except_conn,
                          const std::string& only_user) {
  std::vector<std::pair<int, int64_t>> targets;  // (shard, conn)
  {
    std::lock_guard lk(mu_);
    auto it = rooms_.find(id);
    if (it == rooms_.end()) return;
    for (auto& [user, m] : it->second.members) {
      if (m.conn == except_conn) continue;
      if (!only_user.empty() && user != only_user) continue;
      targets.emplace_back(m.shard, m.conn);
    }
  }
  std::map<int, std::vector<int64_t>> by_shard;
  for (auto& [shard, conn] : targets) by_shard[shard].push_back(conn);
  for (auto& [shard, conns] : by_shard)
    hub_.post(shard, [this, shard, conns = std::move(conns), frame] {
      auto& sh = *shards_[static_cast<std::size_t>(shard)];
      for (auto c : conns)
        if (auto it = sh.live.find(c); it != sh.live.end()) it->second->room_event(frame);
    });
}

void Rooms::fan_out_frame(RoomId id, std::shared_ptr<const std::string> frame,
                          int64_t except_conn) {
  std::vector<int> shards;
  {
    std::lock_guard lk(mu_);
    auto it = rooms_.find(id);
    if (it == rooms_.end()) return;
    for (std::size_t s = 0; s < it->second.shard_members.size(); ++s) {
      int n = it->second.shard_members[s];
      // The sender alone on its shard: nobody to send to there.
      if (n > 0) shards.push_back(static_cast<int>(s));
    }
  }
  for (int shard : shards)
    hub_.post(shard, [this, shard, id, frame, except_conn] {
      auto& rooms = shards_[static_cast<std::size_t>(shard)]->rooms;
      auto r = rooms.find(id);
      if (r == rooms.end()) return;
      int64_t sent = 0, dropped = 0;
      const int64_t at_us = mono_us();
      for (auto& [conn, sink] : r->second) {
        if (conn == except_conn) continue;
        if (sink->room_frame(frame, at_us))
          ++sent;
        else
          ++dropped;
      }
      metrics_.voice_frames_out_total.add(sent);
      if (dropped) metrics_.voice_dropped_total[kVoiceDropSlow].add(dropped);
    });
}

// ---------------------------------------------------------------------------------- hot path

Rooms::FrameResult Rooms::on_frame(int64_t conn, std::string_view in) {
  metrics_.voice_frames_in_total.add();
  auto drop = [this](FrameResult r, std::size_t reason) {
    metrics_.voice_dropped_total[reason].add();
    return r;
  };
  if (in.size() < kInHeader + 1 || static_cast<uint8_t>(in[0]) != kAudio ||
      in.size() - kInHeader > opts_.max_payload)
    return drop(FrameResult::malformed, kVoiceDropMalformed);
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const RoomId id = be32(p + 1);
  uint32_t member_no = 0;
  bool started = false;
  std::string user;
  {
    std::lock_guard lk(mu_);
    auto users = conn_users_.find(conn);
    if (users == conn_users_.end()) return drop(FrameResult::not_joined, kVoiceDropNotJoined);
    auto r = rooms_.find(id);
    if (r == rooms_.end()) return drop(FrameResult::not_joined, kVoiceDropNotJoined);
    auto m = r->second.members.find(users->second);
    if (m == r->second.members.end() || m->second.conn != conn)
      return drop(FrameResult::not_joined, kVoiceDropNotJoined);
    LocalMember& lm = m->second;
    if (lm.muted) return drop(FrameResult::muted, kVoiceDropMuted);
    // A token bucket: max_frames_per_s, with a second's burst. Frames are counted as this node
    // reads them, so a node behind reads a speaker's queued frames as one burst: a second of it
    // does not punish a speaker on pace for the node's own lag.
    const int64_t now_us = mono_us();
    const double rate = static_cast<double>(opts_.max_frames_per_s);
    const double burst = throttle_burst();
    lm.tokens =
        std::min(burst, lm.tokens + rate * static_cast<double>(now_us - lm.tokens_at_us) / 1e6);
    lm.tokens_at_us = now_us;
    if (lm.tokens < 1) return drop(FrameResult::throttled, kVoiceDropThrottled);
    lm.tokens -= 1;
    lm.last_frame_ms = now_us / 1000;
    if (!lm.speaking) {
      lm.speaking = true;
      started = true;
      user = users->second;
    }
    member_no = lm.member_no;
  }
  // One outgoing frame for every recipient, here and on the other nodes.
  std::string out;
  out.resize(kOutHeader + (in.size() - kInHeader));
  out[0] = static_cast<char>(kAudio);
  put32(out, 1, id);
  put32(out, 5, member_no);
  out[9] = in[5];
  out[10] = in[6];
  std::copy(in.begin() + kInHeader, in.end(), out.begin() + kOutHeader);
  auto frame = std::make_shared<const std::string>(std::move(out));
  fan_out_frame(id, frame, conn);
  bus_.publish_transient(room_key(id), frame);
  if (started)
    publish_event(
        id, "room.speaking",
        json::serialize(json::object{{"room_id", id}, {"user_id", user}, {"speaking", true}}));
  return FrameResult::relayed;
}

// ----------------------------------------------------------------------------------- cluster

void Rooms::on_transient(const std::string& key, std::shared_ptr<const std::string> payload) {
  auto id = parse_room_key(key);
  if (!id || !payload || payload->empty()) return;
  if (static_cast<uint8_t>((*payload)[0]) == kAudio) {
    if (payload->size() < kOutHeader) return;
    metrics_.voice_frames_remote_total.add();
    return fan_out_frame(*id, std::move(payload), 0);
  }
  auto o = proto::parse_object(*payload);
  if (!o) return;
  std::string only_user;
  std::shared_ptr<const std::string> frame = payload;
  json::object env = std::move(o.value());
  if (auto* t = env.if_contains("to_user"); t && t->is_string()) {
    only_user = std::string(t->as_string());
    auto* f = env.if_contains("frame");
    if (!f || !f->is_object()) return;
    frame = std::make_shared<const std::string>(json::serialize(*f));
    env = f->as_object();
  }
  auto* cmd = env.if_contains("cmd");
  auto* data = env.if_contains("data");
  if (!cmd || !cmd->is_string() || !data || !data->is_object()) return;
  const std::string c(cmd->as_string());
  auto& d = data->as_object();
  std::string user;
  if (auto* u = d.if_contains("user_id"); u && u->is_string()) user = std::string(u->as_string());
  bool flag = false;
  if (auto* v = d.if_contains("muted"); v && v->is_bool()) flag = v->as_bool();
  if (auto* v = d.if_contains("speaking"); v && v->is_bool()) flag = v->as_bool();
  uint32_t no = 0;
  if (auto* v = d.if_contains("member_no"); v && v->is_number())
    no = static_cast<uint32_t>(v->to_number<int64_t>());
  int64_t except = 0;
  if (c == "room.joined") {
    flag = true;  // from another node
    // The user's membership moved there from a connection here: that connection is told it is
    // out (as on one node), not that its own user joined.
    std::shared_ptr<const std::string> ev;
    int shard = 0;
    {
      std::lock_guard lk(mu_);
      if (auto r = rooms_.find(*id); r != rooms_.end())
        if (auto m = r->second.members.find(user); m != r->second.members.end()) {
          except = m->second.conn;
          shard = m->second.shard;
          ev = moved_frame(*id, user, m->second.member_no);
        }
    }
    if (ev)
      hub_.post(shard, [this, shard, conn = except, ev] {
        auto& sh = *shards_[static_cast<std::size_t>(shard)];
        if (auto live = sh.live.find(conn); live != sh.live.end()) live->second->room_event(ev);
      });
  }
  fan_out_event(*id, std::move(frame), except, only_user);
  apply_event(*id, c, user, flag, no);
}

void Rooms::forget_node(const std::string& node_id) {
  std::vector<RoomMember> gone;
  auto st = svc_.write([&](StoreSession& s) -> Status {
    auto r = s.room_leave_node(node_id);
    if (!r) return r.error();
    gone = std::move(r.value());
    return ok_status();
  });
  if (!st) {
    spdlog::warn("rooms: releasing the members of node {}: {}", node_id, st.error().message);
    return;
  }
  for (auto& row : gone) left(row, "node_lost");
}

void Rooms::sweep() {
  std::unique_lock lk(sweep_mu_);
  while (!stopping_) {
    sweep_cv_.wait_for(lk, std::chrono::milliseconds(100));
    if (stopping_) break;
    lk.unlock();
    std::vector<std::pair<RoomId, std::string>> quiet;
    const int64_t now = mono_us() / 1000;
    {
      std::lock_guard g(mu_);
      for (auto& [id, room] : rooms_)
        for (auto& [user, m] : room.members)
          if (m.speaking && now - m.last_frame_ms > opts_.speaking_timeout_ms) {
            m.speaking = false;
            quiet.emplace_back(id, user);
          }
    }
    for (auto& [id, user] : quiet)
      publish_event(
          id, "room.speaking",
          json::serialize(json::object{{"room_id", id}, {"user_id", user}, {"speaking", false}}));
    lk.lock();
  }
}

}  // namespace converge
