#pragma once
// MQTT 3.1.1 / 5 topic names and topic filters, free of sockets: validation, matching, the
// filter-vs-filter "covers" relation the ACL uses for SUBSCRIBE, and shared subscriptions
// ("$share/<group>/<filter>"). Every function is total: any byte string is a valid argument.
//
// Vocabulary (MQTT 5 section 4.7): a topic name is what a PUBLISH carries (no wildcards); a
// topic filter is what a SUBSCRIBE carries (may contain `+`, one level, and `#`, the rest of the
// levels including the parent). Levels are separated by `/` and may be empty ("a//b", "/x").
// A topic whose first character is `$` ("$SYS/...") is not matched by a filter whose first
// level is a wildcard (`#`, `+/...`); only by one whose first level is the same literal.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace converge::mqtt {

// The longest topic name or filter: an MQTT UTF-8 string carries a 16-bit length.
inline constexpr std::size_t kMaxTopicBytes = 65535;

// A topic name a client may PUBLISH to (or a will topic): non-empty, at most 65535 bytes, valid
// UTF-8 without U+0000, and no `+` or `#` anywhere. (Whether a client may publish to `$...`
// topics is the ACL's business, not syntax.)
bool valid_topic_name(std::string_view topic);

// A topic filter a client may SUBSCRIBE to: the string rules of a topic name, except that `+`
// and `#` are allowed when each is alone in its level, and `#` only as the last level. Valid:
// "#", "+", "a/+/c", "a/#", "+/+", "/", "a//b". Invalid: "", "a/#/b", "a#", "a+/b", "#/", "++".
// A shared subscription ("$share/g/f") is syntactically a valid filter too; see parse_shared.
bool valid_topic_filter(std::string_view filter);

// Whether `topic` (a topic name) is matched by `filter` (a topic filter), MQTT 5 section 4.7:
// `+` matches exactly one level (possibly empty), `#` the remaining levels including none
// ("sport/#" matches "sport"), a filter whose first level is a wildcard does not match a topic
// starting with `$`. Comparison is byte-wise (case-sensitive). For an invalid filter or topic
// the answer is false or unspecified but never undefined behaviour; callers validate first.
bool topic_matches(std::string_view filter, std::string_view topic);

// Whether every topic matched by filter `inner` is also matched by filter `outer` (filter
// inclusion; false when either is not a valid filter). Examples: "#" covers "a/+" but not
// "$SYS/#"; "a/+/c" covers "a/b/c" and "a/+/c" but not "a/#"; "a/#" covers "a" and "a/#".
// It is exact for the `$` rule and for "+/#" (which covers "#": both match every non-`$` topic).
bool filter_covers(std::string_view outer, std::string_view inner);

// A shared subscription (MQTT 5 section 4.8.2): "$share/<group>/<filter>".
struct SharedFilter {
  std::string group;   // the ShareName: non-empty, no `/`, `+` or `#`
  std::string filter;  // a valid topic filter (may itself start with `$` or be "#")
};

// True when `filter` is meant as a shared subscription: it starts with "$share/". (A filter
// "$share" alone, or "$shared/x", is an ordinary filter.)
bool is_shared(std::string_view filter);

// The parts of a well-formed shared subscription. nullopt both when `filter` is not shared and
// when it is malformed ("$share/", "$share/g", "$share//x", "$share/g+/x", "$share/g/a/#/b"):
// tell the two apart with is_shared(). MQTT 5 answers a malformed one with reason 0x8F (topic
// filter invalid).
std::optional<SharedFilter> parse_shared(std::string_view filter);

}  // namespace converge::mqtt
