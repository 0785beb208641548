#include "gateway/mqtt/topic.hpp"

#include "base/utf8.hpp"

namespace converge::mqtt {

namespace {

// Walks the levels of a topic or filter without allocating. "a//b" has levels "a", "", "b";
// "/" has "", "".
class Levels {
 public:
  explicit Levels(std::string_view s) : s_(s) {}
  // The next level into `out`; false when all levels were taken.
  bool next(std::string_view& out) {
    if (done_) return false;
    std::size_t slash = s_.find('/', pos_);
    if (slash == std::string_view::npos) {
      out = s_.substr(pos_);
      done_ = true;
    } else {
      out = s_.substr(pos_, slash - pos_);
      pos_ = slash + 1;
    }
    return true;
  }
  bool done() const { return done_; }
  // The levels not yet taken, as a string ("" when done).
  std::string_view rest() const { return done_ ? std::string_view{} : s_.substr(pos_); }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
  bool done_ = false;
};

bool valid_string(std::string_view s) {
  return !s.empty() && s.size() <= kMaxTopicBytes && s.find('\0') == std::string_view::npos &&
         utf8_valid(s);
}

bool is_wild(std::string_view level) {
  return level == "+" || level == "#";
}

}  // namespace

bool valid_topic_name(std::string_view topic) {
  return valid_string(topic) && topic.find_first_of("+#") == std::string_view::npos;
}

bool valid_topic_filter(std::string_view filter) {
  if (!valid_string(filter)) return false;
  Levels levels(filter);
  std::string_view level;
  while (levels.next(level)) {
    if (level.find_first_of("+#") == std::string_view::npos) continue;
    if (level == "+") continue;
    if (level == "#" && levels.done()) continue;
    return false;
  }
  return true;
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  if (filter.empty() || topic.empty()) return false;
  if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return false;
  Levels f(filter), t(topic);
  std::string_view fl, tl;
  while (f.next(fl)) {
    if (fl == "#") return true;  // the rest, including no level at all ("sport/#" ~ "sport")
    if (!t.next(tl)) return false;
    if (fl != "+" && fl != tl) return false;
  }
  return t.done();
}

bool filter_covers(std::string_view outer, std::string_view inner) {
  if (!valid_topic_filter(outer) || !valid_topic_filter(inner)) return false;
  Levels o(outer), i(inner);
  std::string_view ol, il;
  bool first = true;
  while (o.next(ol)) {
    if (!i.next(il)) {
      // `inner` ended: its topics end here, `outer` matches them only through a final "#".
      return ol == "#";
    }
    if (first && !il.empty() && il[0] == '$' && !is_wild(il) && is_wild(ol)) {
      return false;  // inner's topics start with '$'; a wildcard first level misses them
    }
    if (ol == "#") return true;
    if (il == "#") {
      // inner matches every continuation, including none. At the first level "none" is not a
      // topic, so "+/#" there covers "#" as well; elsewhere only "#" would.
      return first && ol == "+" && o.rest() == "#";
    }
    if (ol != "+" && ol != il) return false;  // a literal covers only itself, not "+"
    first = false;
  }
  return i.done();
}

bool is_shared(std::string_view filter) {
  return filter.starts_with("$share/");
}

std::optional<SharedFilter> parse_shared(std::string_view filter) {
  if (!is_shared(filter) || filter.size() > kMaxTopicBytes) return std::nullopt;
  std::string_view rest = filter.substr(7);
  std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos || slash == 0) return std::nullopt;
  std::string_view group = rest.substr(0, slash);
  std::string_view inner = rest.substr(slash + 1);
  if (group.find_first_of("+#") != std::string_view::npos) return std::nullopt;
  if (!valid_topic_filter(inner) || !utf8_valid(group)) return std::nullopt;
  return SharedFilter{std::string(group), std::string(inner)};
}

}  // namespace converge::mqtt
