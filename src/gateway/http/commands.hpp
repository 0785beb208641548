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

struct CommandReply {
  int status = 200;  // HTTP status of a success (201: made)
  boost::json::object body;
};

// Whether `name` is one of these commands (conversation.update, application.create, ...).
bool is_group_command(std::string_view name);
Result<CommandReply> run_group_command(Service& svc, const AuthContext& who, std::string_view name,
                                       const boost::json::object& data);

}  // namespace converge
