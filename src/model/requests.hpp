#pragma once
// What a client asks for, already parsed and type-checked, independent of the wire it came on.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "model/model.hpp"

namespace converge {

struct SendRequest {
  ConversationId conversation_id = 0;
  MessageType type = MessageType::text;
  std::string body;
  std::string client_msg_id;
  std::string file_id;  // required for image, file and voice
  // Users mentioned (canonical ids, sorted, each once) or {"all"}: proto checks the form, the
  // writer that each is a member and who may mention all (model.hpp, kMaxMentions).
  std::vector<std::string> mentions;
};

struct SendAck {
  ConversationId conversation_id = 0;
  Seq seq = 0;
  std::string client_msg_id;
  int64_t ts_ms = 0;
  bool duplicate = false;  // an earlier send with this client_msg_id was stored
};

// Per-conversation cursors of a device (heartbeat) or positions (sync).
using SeqMap = std::map<ConversationId, Seq>;

struct SyncRequest {
  int64_t limit = 0;   // 0 = server default
  std::string cursor;  // opaque continuation from a previous page
};

struct SyncPage {
  std::vector<Message> messages;  // ordered by conversation id, then seq
  bool more = false;
  std::string next_cursor;  // set when more
};

struct CreateConversationRequest {
  ConversationType type = ConversationType::group;
  std::vector<std::string> members;  // the caller is added if absent
  std::string name;
};

}  // namespace converge
