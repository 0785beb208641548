#pragma once
// Plain types shared by every layer. No behaviour beyond validation of identifiers.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace converge {

using ConversationId = int64_t;  // rendered as a decimal string on the wire, as in seed 000
using Seq = int64_t;             // per conversation, starts at 1, no gaps

enum class MessageType { text, image, file, voice };
std::string_view message_type_name(MessageType t);
std::optional<MessageType> parse_message_type(std::string_view s);

enum class ConversationType { direct, group };
std::string_view conversation_type_name(ConversationType t);
std::optional<ConversationType> parse_conversation_type(std::string_view s);

// User and device ids: 1-64 of [A-Za-z0-9_.@-]. No '/', '+', '#' so they can be MQTT topic
// levels, no spaces so they can be AMQP routing-key words.
bool valid_user_id(std::string_view id);
inline bool valid_device_id(std::string_view id) {
  return valid_user_id(id);
}
std::optional<ConversationId> parse_conversation_id(std::string_view s);

struct User {
  std::string id;
  std::string name;
  bool is_admin = false;
  int64_t created_at_ms = 0;
};

// Who is calling: resolved from a token.
struct AuthContext {
  std::string user_id;
  std::string user_name;
  std::string device_id;
  bool is_admin = false;
  int64_t expires_at_ms = 0;
};

struct FileMeta {
  std::string id;      // random, public handle
  std::string sha256;  // content address of the blob
  std::string name;
  std::string mime;
  int64_t size = 0;
  std::string uploader;
  int64_t created_at_ms = 0;
};

struct Message {
  ConversationId conversation_id = 0;
  Seq seq = 0;
  std::string publisher_id;
  std::string publisher_name;
  MessageType type = MessageType::text;
  std::string body;
  std::string client_msg_id;  // empty: the sender did not ask for idempotency
  int64_t ts_ms = 0;
  std::optional<FileMeta> file;
};

struct Member {
  std::string user_id;
  bool muted = false;
};

struct Conversation {
  ConversationId id = 0;
  ConversationType type = ConversationType::group;
  std::string name;
  std::string owner;
  Seq last_seq = 0;
  int64_t created_at_ms = 0;
  std::vector<Member> members;
};

}  // namespace converge
