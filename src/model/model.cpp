#include "model/model.hpp"

#include <algorithm>
#include <charconv>
#include <functional>

#include "base/utf8.hpp"

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
    case MessageType::system:
      return "system";
  }
  return "text";
}

std::optional<MessageType> parse_stored_message_type(std::string_view s) {
  if (s == "system") return MessageType::system;
  return parse_message_type(s);
}

std::string_view role_name(Role r) {
  switch (r) {
    case Role::owner:
      return "owner";
    case Role::admin:
      return "admin";
    case Role::member:
      return "member";
  }
  return "member";
}

std::optional<Role> parse_role(std::string_view s) {
  if (s == "owner") return Role::owner;
  if (s == "admin") return Role::admin;
  if (s == "member") return Role::member;
  return std::nullopt;
}

std::string_view join_policy_name(JoinPolicy p) {
  switch (p) {
    case JoinPolicy::open:
      return "open";
    case JoinPolicy::approval:
      return "approval";
    case JoinPolicy::invite_only:
      return "invite_only";
  }
  return "approval";
}

std::optional<JoinPolicy> parse_join_policy(std::string_view s) {
  if (s == "open") return JoinPolicy::open;
  if (s == "approval") return JoinPolicy::approval;
  if (s == "invite_only") return JoinPolicy::invite_only;
  return std::nullopt;
}

std::string_view direct_policy_name(DirectPolicy p) {
  return p == DirectPolicy::friends ? "friends" : "anyone";
}

std::optional<DirectPolicy> parse_direct_policy(std::string_view s) {
  if (s == "anyone") return DirectPolicy::anyone;
  if (s == "friends") return DirectPolicy::friends;
  return std::nullopt;
}

std::string_view request_kind_name(RequestKind k) {
  switch (k) {
    case RequestKind::application:
      return "application";
    case RequestKind::invitation:
      return "invitation";
    case RequestKind::friend_request:
      return "friend_request";
  }
  return "application";
}

std::optional<RequestKind> parse_request_kind(std::string_view s) {
  if (s == "application") return RequestKind::application;
  if (s == "invitation") return RequestKind::invitation;
  if (s == "friend_request") return RequestKind::friend_request;
  return std::nullopt;
}

std::string_view request_status_name(RequestStatus s) {
  switch (s) {
    case RequestStatus::pending:
      return "pending";
    case RequestStatus::approved:
      return "approved";
    case RequestStatus::declined:
      return "declined";
    case RequestStatus::accepted:
      return "accepted";
    case RequestStatus::expired:
      return "expired";
    case RequestStatus::cancelled:
      return "cancelled";
  }
  return "pending";
}

std::optional<RequestStatus> parse_request_status(std::string_view s) {
  for (auto st : {RequestStatus::pending, RequestStatus::approved, RequestStatus::declined,
                  RequestStatus::accepted, RequestStatus::expired, RequestStatus::cancelled})
    if (request_status_name(st) == s) return st;
  return std::nullopt;
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

namespace {
bool id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '@' || c == '-';
}
bool alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
}  // namespace

bool valid_user_id(std::string_view id) {
  if (id.empty() || id.size() > 64 || !alnum(id[0])) return false;
  for (char c : id)
    if (!id_char(c)) return false;
  return canonical_user_id(id) != "all";
}

std::string canonical_user_id(std::string_view id) {
  std::string out(id);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool valid_device_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!id_char(c)) return false;
  return true;
}

bool valid_display_name(std::string_view name) {
  if (!utf8_valid(name)) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(name.data());
  for (std::size_t i = 0; i < name.size(); ++i) {
    unsigned char c = p[i];
    if (c < 0x20 || c == 0x7F) return false;
    if (c == 0xC2 && i + 1 < name.size() && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F)
      return false;  // C1 controls U+0080-U+009F
    if (c == 0xE2 && i + 2 < name.size()) {
      unsigned char b = p[i + 1], d = p[i + 2];
      if (b == 0x80 && d >= 0xAA && d <= 0xAE) return false;  // U+202A-U+202E
      if (b == 0x81 && d >= 0xA6 && d <= 0xA9) return false;  // U+2066-U+2069
    }
  }
  return true;
}

std::optional<ConversationId> parse_conversation_id(std::string_view s) {
  ConversationId v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || p != s.data() + s.size() || v <= 0) return std::nullopt;
  return v;
}

bool mentions_all(const std::vector<std::string>& mentions) {
  return mentions.size() == 1 && mentions[0] == kMentionAll;
}

bool mentions_user(const std::vector<std::string>& mentions, std::string_view user_id) {
  return mentions_all(mentions) ||
         std::binary_search(mentions.begin(), mentions.end(), user_id, std::less<>());
}

std::string join_mentions(const std::vector<std::string>& mentions) {
  std::string out;
  for (auto& m : mentions) {
    if (!out.empty()) out += ',';
    out += m;
  }
  return out;
}

std::vector<std::string> split_mentions(std::string_view joined) {
  std::vector<std::string> out;
  while (!joined.empty()) {
    auto comma = joined.find(',');
    auto part = joined.substr(0, comma);
    if (!part.empty()) out.emplace_back(part);
    if (comma == std::string_view::npos) break;
    joined.remove_prefix(comma + 1);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace converge
