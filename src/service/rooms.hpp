#pragma once
// Voice rooms (seed 001, DESIGN.md section 7): rooms and their members in the store (the same
// on every node, member numbers assigned under the room's row lock), audio frames relayed with
// no storage and no copy per recipient, room events, and the cluster's part: frames and events
// cross the bus on the transient path, on a binding per room ("room.<id>") that a node holds
// while it has members in the room.
//
// Threads. Commands (join, leave, mute, ...) block on the store: the work pool. Frames arrive on
// the sender's network thread (on_frame) and are handed to each network thread (hub shard) that
// has members of the room, once per shard, where the shard's own table of its connections sends
// them: a connection is only ever touched on its own thread. The local view of who is in which
// room here (for checks on the hot path) is under one mutex, held for a few lookups per frame.
#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/error.hpp"
#include "base/metrics.hpp"
#include "model/model.hpp"

namespace converge {

class Service;
class Bus;
class Hub;

// A connection that can be in rooms (the WebSocket). Called on the connection's own thread.
class RoomSink {
 public:
  virtual ~RoomSink() = default;
  // An audio frame, relayed at `at_us` (mono_us): false when the connection is behind and drops
  // it (never queued unbounded; a frame that waits too long in the queue is dropped later).
  virtual bool room_frame(const std::shared_ptr<const std::string>& frame, int64_t at_us) = 0;
  // A room event, a whole text frame ({"cmd": "room.joined", "data": ...}).
  virtual void room_event(const std::shared_ptr<const std::string>& frame) = 0;
};

struct RoomsOptions {
  int64_t max_frames_per_s = 100;         // voice_max_frames_per_s: a sender over it is throttled
  int64_t max_members_cap = 1000;         // the largest max_members a room may ask for
  std::size_t max_payload = 4000;         // bytes of one audio payload (an Opus packet is < 1,300)
  int64_t speaking_timeout_ms = 300;      // no frame for this long: no longer speaking
  std::size_t max_message_bytes = 16384;  // room.send's body, serialized
};

// What room.join answers.
struct RoomJoinView {
  Room room;
  uint32_t me = 0;
  struct Member {
    std::string user_id;
    uint32_t member_no = 0;
    bool muted = false;
    bool speaking = false;
  };
  std::vector<Member> members;
};

class Rooms {
 public:
  Rooms(RoomsOptions opts, Service& svc, Bus& bus, Hub& hub, Metrics& metrics);
  ~Rooms();
  Rooms(const Rooms&) = delete;
  Rooms& operator=(const Rooms&) = delete;

  // Members left behind by an earlier run of this node (every member, for a node alone) go;
  // starts the speaking sweep.
  Status start(bool sole_node);
  void stop();

  // --- HTTP (blocking) ---
  Result<Room> create(const AuthContext& who, std::string name, int64_t max_members);
  Result<std::vector<Room>> list(const AuthContext& who, RoomId after, int64_t limit);
  Result<RoomJoinView> get(const AuthContext& who, RoomId id);  // `me` is 0 there
  Status remove_room(const AuthContext& who, RoomId id);        // the owner

  // --- connections (their own thread) ---
  int64_t new_connection_id() { return next_conn_.fetch_add(1) + 1; }
  // Before the connection's first join; `shard` is its network thread's hub shard.
  void open_connection(int shard, int64_t conn, RoomSink* sink);
  // The connection is gone: no frame or event reaches it from now on, and it leaves its rooms.
  void close_connection(int shard, int64_t conn);

  // --- commands (blocking: the work pool) ---
  Result<RoomJoinView> join(const AuthContext& who, RoomId id, int shard, int64_t conn);
  Status leave(const AuthContext& who, RoomId id, int64_t conn);
  Status mute(const AuthContext& who, RoomId id, int64_t conn, bool muted);
  Status mute_member(const AuthContext& who, RoomId id, const std::string& user_id, bool muted);
  Status remove_member(const AuthContext& who, RoomId id, const std::string& user_id);
  // Seed 001's one-user and all-users events: to `to` only, or to every other member.
  Status send(const AuthContext& who, RoomId id, int64_t conn, const std::string& to,
              std::string body_json);

  // --- the hot path (the sender's thread) ---
  enum class FrameResult { relayed, malformed, not_joined, muted, throttled };
  FrameResult on_frame(int64_t conn, std::string_view frame);

  // --- the cluster ---
  // Transient traffic of key "room.<id>" from another node: a frame or an event.
  void on_transient(const std::string& key, std::shared_ptr<const std::string> payload);
  // A node taken for dead: its members leave their rooms (told to the others). Blocking.
  void forget_node(const std::string& node_id);

  static std::string room_key(RoomId id) { return "room." + std::to_string(id); }

 private:
  struct LocalMember {
    int64_t conn = 0;
    int shard = 0;
    uint32_t member_no = 0;
    bool muted = false;
    bool speaking = false;
    int64_t last_frame_ms = 0;
    double tokens = 0;  // the throttle's bucket
    int64_t tokens_at_us = 0;
  };
  struct LocalRoom {
    std::map<std::string, LocalMember> members;  // by user id
    std::set<std::string> remote_speaking;       // members on other nodes now speaking
    std::vector<int> shard_members;              // members per shard
  };
  struct ShardState {  // its shard's thread only
    std::unordered_map<int64_t, RoomSink*> live;
    std::unordered_map<RoomId, std::vector<std::pair<int64_t, RoomSink*>>> rooms;
  };

  // The event to the room's members here (all, or all but `except`, or `only_user`'s) and to
  // the other nodes', after applying it to the local view.
  void publish_event(RoomId id, const char* cmd, const std::string& data_json,
                     int64_t except_conn = 0, const std::string& only_user = "");
  // An event (ours or another node's) applied to the local view: who is muted, who left.
  void apply_event(RoomId id, std::string_view cmd, const std::string& user, bool flag,
                   uint32_t member_no);
  void fan_out_event(RoomId id, std::shared_ptr<const std::string> frame, int64_t except_conn,
                     const std::string& only_user);
  void fan_out_frame(RoomId id, std::shared_ptr<const std::string> frame, int64_t except_conn);
  // The throttle's bucket size: a second of frames (at least 10).
  double throttle_burst() const {
    return std::max(static_cast<double>(opts_.max_frames_per_s), 10.0);
  }
  // Local view changes: mu_ held by the caller. They post the shard tables' changes.
  void add_local_locked(RoomId id, const std::string& user, const LocalMember& m);
  void drop_local_locked(RoomId id, const std::string& user);
  void left(const RoomMember& row, const char* reason);
  void sweep();  // the speaking sweep's loop

  RoomsOptions opts_;
  Service& svc_;
  Bus& bus_;
  Hub& hub_;
  Metrics& metrics_;
  std::atomic<int64_t> next_conn_{0};
  std::vector<std::unique_ptr<ShardState>> shards_;

  std::mutex mu_;
  std::unordered_map<RoomId, LocalRoom> rooms_;
  std::unordered_map<int64_t, std::set<RoomId>> conn_rooms_;
  std::unordered_map<int64_t, std::string> conn_users_;

  std::mutex sweep_mu_;
  std::condition_variable sweep_cv_;
  bool stopping_ = false;
  std::thread sweeper_;
};

}  // namespace converge
