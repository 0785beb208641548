#pragma once
// The group workflows as named calls (DESIGN.md section 8), one implementation for every front
// that speaks JSON: the HTTP API maps its routes onto them (path ids and body fields merged into
// `data`), and a WebSocket command of the same name calls them directly. Blocking: call on the
// work pool.
#include <boost/json/object.hpp>
#include <string_view>

#include "base/error.hpp"
#include "model/model.hpp"

namespace converge {

class Service;
class Rooms;
struct Room;
struct RoomJoinView;

struct CommandReply {
  int status = 200;  // HTTP status of a success (201: made)
  boost::json::object body;
};

// Whether `name` is one of these commands (conversation.update, application.create, ...).
bool is_group_command(std::string_view name);
Result<CommandReply> run_group_command(Service& svc, const AuthContext& who, std::string_view name,
                                       const boost::json::object& data);

// Voice rooms (DESIGN.md section 7). The room.* WebSocket commands, for the connection `conn`
// of hub shard `shard`; and the objects the HTTP API answers with.
bool is_room_command(std::string_view name);
Result<CommandReply> run_room_command(Rooms& rooms, const AuthContext& who, int shard, int64_t conn,
                                      std::string_view name, const boost::json::object& data);
boost::json::object room_json(const Room& r);
boost::json::object room_view_json(const RoomJoinView& v);

}  // namespace converge
