#pragma once
// The MQTT access-control list: mosquitto's `acl_file` format (DESIGN.md section 3, key
// `mqtt_acl_file`), parsed once at start, then asked on every PUBLISH, SUBSCRIBE and delivery.
// Free of sockets; immutable after parse, so safe to share between threads.
//
// File format (one rule per line, as mosquitto.conf(5) "acl_file"):
//   # comment                      a line whose first non-blank character is '#'
//                                   (blank lines are ignored too)
//   topic [read|write|readwrite|deny] <filter>
//   pattern [read|write|readwrite|deny] <filter>
//   user <username>
// - The access word is optional: "topic a/b" is readwrite. As in mosquitto, a line with a single
//   word after the keyword takes it as the filter ("topic deny" grants readwrite on the topic
//   "deny"); with more words, the first must be an access word and the rest of the line (which
//   may contain spaces) is the filter. <filter> must be a valid topic filter.
// - `topic` lines before any `user` line apply to every client, anonymous or not; after
//   `user <name>` (rest of the line, trimmed) they apply to that username only, until the next
//   `user` line. Several blocks of one user add up. (Mosquitto applies the lines before any
//   `user` line to anonymous clients only; here they are global: a file of just
//   "topic readwrite #" opens the broker to everyone.)
// - `pattern` lines apply to every client wherever they appear; each "%u" in the filter is
//   replaced by the username and each "%c" by the client id. A pattern with "%u" does not
//   apply to anonymous clients. A username or client id that is empty or contains '+', '#' or
//   '/' is unsafe to substitute (a user named "a/b" would reach into user "a"'s tree, a user
//   named "#" everywhere): then an allowing pattern using it does not apply, and a `deny`
//   pattern using it denies every topic. (Mosquitto instead denies all access to such clients
//   whenever there is any pattern, and does not check '/'.)
// - Any other keyword, a missing filter or username, an invalid access word or filter, or a
//   line that is not UTF-8 is an error naming its line number; the node refuses to start.
//
// Decisions (a client is checked against the global rules, its user's rules and the patterns):
// - Deny wins: if any applicable `deny` rule matches, access is refused, whatever allows it.
//   (Mosquitto 2.0 checks the user's rules, denies first, before the patterns, so there a
//   user's allow overrides a pattern's deny; here no order of lines can undo a deny.)
// - Otherwise access is granted when an applicable allowing rule matches: `write` and
//   `readwrite` for PUBLISH (can_publish), `read` and `readwrite` for delivery (can_read) and
//   SUBSCRIBE (can_subscribe). No matching rule: refused.
// - Matching is MQTT matching, including the `$` rule: a rule "#" or "+/x" does not match
//   "$SYS/..." topics, so "topic readwrite #" grants neither reading nor publishing `$SYS`
//   (as in mosquitto); grant it with e.g. "topic read $SYS/#".
// - SUBSCRIBE: a filter is allowed when one allowing rule covers it (every topic the filter can
//   match is matched by the rule: filter_covers in topic.hpp), and refused when one deny rule
//   covers it. "topic read sensors/+/temp" allows "sensors/+/temp" and "sensors/a/temp", not
//   "sensors/#"; "topic deny test/nosubscribe" refuses that filter but not "test/+" or "#",
//   whose deliveries of test/nosubscribe are then refused one by one by can_read. Rules that
//   only together cover a filter do not allow it ("read a/x" + "read a/y" do not allow "a/+").
//   (Mosquitto 2.0's acl_file does not check SUBSCRIBE at all, only deliveries.)
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/error.hpp"

namespace converge::mqtt {

// Who is asking: the CONNECT's username (nullopt when it had none: anonymous) and client id
// (the one the broker assigned if the client sent none).
struct AclClient {
  std::optional<std::string_view> username;
  std::string_view client_id;
};

class Acl {
 public:
  // Parses acl_file text. Errors (Errc::bad_request) read "line N: <what>".
  static Result<Acl> parse(std::string_view text);
  // Reads and parses the file at `path`; errors read "<path>: line N: <what>" or
  // "<path>: <why it cannot be read>".
  static Result<Acl> load_file(const std::string& path);
  // The rules without an acl file: an authenticated user may read and write app/<username>/#
  // (the pattern app/%u/#) and read app/public/#; anonymous clients get nothing.
  static Acl default_rules();

  // PUBLISH (and a will) to `topic`; false when it is not a valid topic name.
  bool can_publish(const AclClient& client, std::string_view topic) const;
  // Delivery of a message on `topic` (a topic name the broker validated when it was published:
  // not validated again on this hot path) to this client, checked for every delivery since a
  // subscription may be wider than what the client may read.
  bool can_read(const AclClient& client, std::string_view topic) const;
  // SUBSCRIBE to `filter`: a topic filter, or "$share/<group>/<filter>" (checked as <filter>).
  // False for an invalid filter.
  bool can_subscribe(const AclClient& client, std::string_view filter) const;

  // Rules loaded (diagnostics).
  std::size_t rule_count() const;

 private:
  enum Access : std::uint8_t { kDeny = 0, kRead = 1, kWrite = 2, kReadWrite = 3 };
  enum class Op { publish, read, subscribe };
  struct Rule {
    Access access = kDeny;
    std::string filter;
    bool pattern = false;     // substitute %u / %c
    bool has_u = false;       // pattern uses %u
    bool has_c = false;       // pattern uses %c
    bool needs_user = false;  // applies to authenticated clients only
  };
  struct RuleSet {
    std::vector<Rule> deny;
    std::vector<Rule> allow;
    void add(Rule r);
    std::size_t size() const { return deny.size() + allow.size(); }
  };
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };

  bool check(const AclClient& client, std::string_view target, Op op) const;
  static bool applies(const Rule& r, const AclClient& client, std::string_view target, Op op,
                      bool deny);

  RuleSet global_;  // topic lines before any user line, and built-in rules
  std::unordered_map<std::string, RuleSet, StringHash, std::equal_to<>> users_;
  RuleSet patterns_;
};

}  // namespace converge::mqtt
