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

// `system`: stored by the node itself (a group's change, DESIGN.md section 8), never sent by a
// client: parse_message_type does not accept it, parse_stored_message_type does.
enum class MessageType { text, image, file, voice, system };
std::string_view message_type_name(MessageType t);
std::optional<MessageType> parse_message_type(std::string_view s);         // what a client sends
std::optional<MessageType> parse_stored_message_type(std::string_view s);  // what a store holds

enum class ConversationType { direct, group };
std::string_view conversation_type_name(ConversationType t);
std::optional<ConversationType> parse_conversation_type(std::string_view s);

// User ids: 1-64 of [a-z0-9_.@-], the first a letter or a digit (so never ".", ".." or "-x"),
// compared without ASCII case: every edge folds them with canonical_user_id, and valid_user_id
// accepts either case. No '/', '+', '#' so they can be MQTT topic levels, no spaces so they can
// be AMQP routing-key words. "all" is reserved (a mention of every member).
bool valid_user_id(std::string_view id);
std::string canonical_user_id(std::string_view id);  // ASCII lower case
// Device ids: 1-64 of [A-Za-z0-9_.@-], case-sensitive (MQTT client ids are).
bool valid_device_id(std::string_view id);
// Display names (users, conversations): valid UTF-8 without control characters (C0, DEL, C1)
// or bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which
// let a name disguise itself or what follows it. Empty is allowed (the caller defaults it).
bool valid_display_name(std::string_view name);
std::optional<ConversationId> parse_conversation_id(std::string_view s);

// Mentions of a message: user ids (canonical, sorted, each once), or {"all"} alone (every member;
// the owner's, and later an admin's, to give). At most kMaxMentions ids.
inline constexpr std::size_t kMaxMentions = 50;
inline constexpr std::string_view kMentionAll = "all";
bool mentions_all(const std::vector<std::string>& mentions);
bool mentions_user(const std::vector<std::string>& mentions, std::string_view user_id);
// The store's form: ids joined by commas ("" for none); user ids never contain a comma.
std::string join_mentions(const std::vector<std::string>& mentions);
std::vector<std::string> split_mentions(std::string_view joined);

// Roles in a group (DESIGN.md section 8): one owner, admins, members. A direct conversation's
// two members are both `member`. Ordered: a role may act on those below it.
enum class Role { member = 0, admin = 1, owner = 2 };
std::string_view role_name(Role r);
std::optional<Role> parse_role(std::string_view s);

// Who may join a group: anyone (`open`), on an owner's or admin's approval of an application
// (`approval`, the default), or only by invitation (`invite_only`).
enum class JoinPolicy { open, approval, invite_only };
std::string_view join_policy_name(JoinPolicy p);
std::optional<JoinPolicy> parse_join_policy(std::string_view s);

// Who may open a direct conversation with a user: anyone (the default), or only their friends
// (`friends`: a stranger's direct conversation is refused; friend requests stay open to all).
enum class DirectPolicy { anyone, friends };
std::string_view direct_policy_name(DirectPolicy p);
std::optional<DirectPolicy> parse_direct_policy(std::string_view s);

struct User {
  std::string id;
  std::string name;
  bool is_admin = false;
  int64_t created_at_ms = 0;
  DirectPolicy direct_policy = DirectPolicy::anyone;
};

// Who is calling: resolved from a token.
struct AuthContext {
  std::string user_id;
  std::string user_name;
  std::string device_id;
  bool is_admin = false;
  int64_t expires_at_ms = 0;
  std::string token_hash;  // digest of the token this context came from (revocation matches it)
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
  std::vector<std::string> mentions;  // as the sender gave them, checked (see kMaxMentions)
};

struct Member {
  std::string user_id;
  bool muted = false;
  Role role = Role::member;  // owner: the conversation's `owner` (the store keeps it there)
};

struct Conversation {
  ConversationId id = 0;
  ConversationType type = ConversationType::group;
  std::string name;
  std::string owner;
  Seq last_seq = 0;
  int64_t created_at_ms = 0;
  int64_t members_version = 0;  // bumped by every membership change (store.hpp)
  std::vector<Member> members;
  std::string notice;  // a group's notice board (announcement), set by owner or admins
  JoinPolicy join_policy = JoinPolicy::approval;
};

// Join applications, invitations and friend requests (DESIGN.md section 8): one shape, three
// kinds. `user_id` is who the request is about: the applicant, the invitee, the friend asked;
// `from_id` who made it: the applicant, the inviter, the friend asking. Pending until decided
// once, or until expires_at_ms.
enum class RequestKind { application, invitation, friend_request };
std::string_view request_kind_name(RequestKind k);
std::optional<RequestKind> parse_request_kind(std::string_view s);
enum class RequestStatus { pending, approved, declined, accepted, expired, cancelled };
std::string_view request_status_name(RequestStatus s);
std::optional<RequestStatus> parse_request_status(std::string_view s);

struct Request {
  std::string id;  // random, public handle
  RequestKind kind = RequestKind::application;
  ConversationId conversation_id = 0;  // the group; for a friend request, the direct one once accepted
  std::string user_id;
  std::string from_id;
  std::string text;
  RequestStatus status = RequestStatus::pending;
  std::string decided_by;
  int64_t created_at_ms = 0;
  int64_t decided_at_ms = 0;
  int64_t expires_at_ms = 0;
};

struct Friend {
  std::string user_id;
  int64_t since_ms = 0;
};

// Voice rooms (seed 001, DESIGN.md section 7). Ids are below 2^32 (they travel as a u32 in
// audio frames). A member is one user, on one connection of one node; member_no is theirs for as
// long as they are in the room (assigned by the store: the same on every node).
using RoomId = uint32_t;
struct Room {
  RoomId id = 0;
  std::string name;
  std::string owner;
  int64_t max_members = 50;
  int64_t created_at_ms = 0;
  int64_t member_count = 0;  // as read
};
struct RoomMember {
  RoomId room_id = 0;
  std::string user_id;
  uint32_t member_no = 0;
  bool muted = false;
  std::string node_id;  // the node holding the member's connection
  int64_t conn_id = 0;  // the connection there
  int64_t joined_at_ms = 0;
};

}  // namespace converge
