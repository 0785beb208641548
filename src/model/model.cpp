#include "model/model.hpp"

#include <charconv>

namespace converge {

std::string_view message_type_name(MessageType t) {
  switch (t) {
    case MessageType::text:
      return "text";
    case MessageType::image:
      return "image";
    case MessageType::file:
      return "file";
    case MessageType::voice:
      return "voice";
  }
  return "text";
}

std::optional<MessageType> parse_message_type(std::string_view s) {
  if (s == "text") return MessageType::text;
  if (s == "image") return MessageType::image;
  if (s == "file") return MessageType::file;
  if (s == "voice") return MessageType::voice;
  return std::nullopt;
}

std::string_view conversation_type_name(ConversationType t) {
  return t == ConversationType::direct ? "direct" : "group";
}

std::optional<ConversationType> parse_conversation_type(std::string_view s) {
  if (s == "direct") return ConversationType::direct;
  if (s == "group") return ConversationType::group;
  return std::nullopt;
}

bool valid_user_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '@' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::optional<ConversationId> parse_conversation_id(std::string_view s) {
  ConversationId v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

}  // namespace converge
