#pragma once
// The one JSON codec: the seed envelope {"token"?, "cmd", "id"?, "data"} and every object the
// node puts on a wire (HTTP bodies, WebSocket frames). Boost.JSON is compiled once, in
// json_impl.cpp.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.hpp"
#include "bus/bus.hpp"
#include "model/model.hpp"
#include "model/requests.hpp"

namespace converge::proto {

namespace json = boost::json;

struct Envelope {
  std::string cmd;
  std::string id_json;  // the request id exactly as sent (number or string), "" if absent
  std::string token;    // optional per-frame token (seed 000), "Tricolor" prefix stripped
  json::object data;
};

// Parses a JSON document that must be an object; `max_depth` guards against nesting bombs.
Result<json::object> parse_object(std::string_view text);
// On failure, `id_out` (when given) receives the request id if the id itself was readable.
Result<Envelope> parse_envelope(std::string_view text, std::string* id_out = nullptr);

// Strips an optional "Tricolor" or "Bearer " prefix from a token.
std::string_view strip_token_prefix(std::string_view token);
// The token of an Authorization header value, which must name its scheme: "Bearer <t>"
// (any case), or seed 000's "Tricolor<t>" / "Tricolor <t>". Nothing for a bare token or
// another scheme.
std::optional<std::string_view> token_from_authorization(std::string_view header);

// Typed field access with the error a client should see.
Result<std::string> get_string(const json::object& o, std::string_view key, bool required,
                               std::size_t max_len);
Result<int64_t> get_int(const json::object& o, std::string_view key, bool required, int64_t dflt);
// Accepts "12" or 12.
Result<ConversationId> get_conversation_id(const json::object& o, std::string_view key);
Result<std::vector<std::string>> get_user_list(const json::object& o, std::string_view key);

// A send's `mentions` (absent or null: none): user ids folded, sorted and once each, or ["all"]
// alone; bad_request for another shape, too_large past kMaxMentions.
Result<std::vector<std::string>> get_mentions(const json::object& data);
Result<SendRequest> parse_send(const json::object& data, std::size_t max_body_bytes);
Result<SeqMap> parse_seqs(const json::object& data);  // {"seqs": {"<conv>": seq}}; absent = {}
Result<SyncRequest> parse_sync(const json::object& data);
Result<CreateConversationRequest> parse_create_conversation(const json::object& body);

std::string conversation_id_str(ConversationId id);
json::object file_json(const FileMeta& f);
json::object message_json(const Message& m);
json::object conversation_json(const Conversation& c, std::string_view for_user);
json::object user_json(const User& u);
json::object request_json(const Request& r);  // an application, invitation or friend request
json::object seqs_json(const SeqMap& seqs);
json::object sync_page_json(const SyncPage& page);

// WebSocket frames (server -> client).
std::string frame(std::string_view cmd, std::string_view id_json, const json::object& data);
// The two frames of every message, written straight into a string (no json::object): the same
// document as frame("msg", "", message_json(m)) and frame("ack", id, {...}).
std::string frame_msg(const Message& m);
// A stored message's JSON object (message_json's document), appended to `out`.
void append_message_json(std::string& out, const Message& m);
// A sync / offline page (sync_page_json's document): the HTTP body, and the WebSocket frame.
std::string sync_page_body(const SyncPage& page);
std::string frame_sync(std::string_view id_json, const SyncPage& page);
std::string frame_ack(std::string_view id_json, const SendAck& a);
std::string frame_error(std::string_view id_json, const Error& e);
// HTTP error body {"error":{"code","message"}}.
std::string error_body(const Error& e);

std::string serialize(const json::object& o);

// --- between nodes (the bus) ---
// A stored message's frame (frame_msg's form, seed 000's envelope) read back into a Message.
Result<Message> parse_message_frame(std::string_view frame);
// A notice as the bus carries it: a seed-000 envelope a plain AMQP client can read too
// ({"cmd":"event"|"broadcast"|"conversation"|"revoke", "data":..., ...}), and back.
std::string notice_envelope(const Notice& n);
Result<std::shared_ptr<Notice>> parse_notice_envelope(std::string_view text);

}  // namespace converge::proto
