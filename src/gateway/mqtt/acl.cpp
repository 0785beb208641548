#include "gateway/mqtt/acl.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/utf8.hpp"
#include "gateway/mqtt/topic.hpp"

namespace converge::mqtt {

namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

// The first blank-separated word of `s` (trimmed), and the trimmed remainder in `rest`.
std::string_view first_word(std::string_view s, std::string_view& rest) {
  s = trim(s);
  std::size_t i = 0;
  while (i < s.size() && !is_blank(s[i])) ++i;
  rest = trim(s.substr(i));
  return s.substr(0, i);
}

// Whether a username or client id may be put into a pattern: it must stay one literal level.
bool safe_value(std::string_view v) {
  return !v.empty() && v.find_first_of(std::string_view("+#/\0", 4)) == std::string_view::npos;
}

std::string substitute(std::string_view pattern, std::string_view user, std::string_view client) {
  std::string out;
  out.reserve(pattern.size() + user.size() + client.size());
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size()) {
      if (pattern[i + 1] == 'u') {
        out += user;
        ++i;
        continue;
      }
      if (pattern[i + 1] == 'c') {
        out += client;
        ++i;
        continue;
      }
    }
    out += pattern[i];
  }
  return out;
}

Error line_error(std::size_t line, std::string what) {
  return make_error(Errc::bad_request, "line " + std::to_string(line) + ": " + what);
}

// Quotes a piece of the file for an error message (valid UTF-8 by then, shortened).
std::string quoted(std::string_view s) {
  return "\"" + std::string(utf8_truncate(s, 80)) + (s.size() > 80 ? "...\"" : "\"");
}

}  // namespace

void Acl::RuleSet::add(Rule r) {
  (r.access == kDeny ? deny : allow).push_back(std::move(r));
}

Result<Acl> Acl::parse(std::string_view text) {
  Acl acl;
  std::optional<std::string> user;  // the current `user` block
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    ++line_no;
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view raw = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (!utf8_valid(raw)) return line_error(line_no, "not valid UTF-8");
    if (raw.find('\0') != std::string_view::npos) return line_error(line_no, "contains NUL");
    std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') continue;

    std::string_view rest;
    std::string_view keyword = first_word(line, rest);
    if (keyword == "topic" || keyword == "pattern") {
      if (rest.empty()) return line_error(line_no, "missing topic filter");
      std::string_view after;
      std::string_view word = first_word(rest, after);
      Access access = kReadWrite;
      std::string_view filter = rest;
      if (!after.empty()) {
        if (word == "read") {
          access = kRead;
        } else if (word == "write") {
          access = kWrite;
        } else if (word == "readwrite") {
          access = kReadWrite;
        } else if (word == "deny") {
          access = kDeny;
        } else {
          return line_error(
              line_no, "invalid access type " + quoted(word) + " (read, write, readwrite or deny)");
        }
        filter = after;
      }
      if (!valid_topic_filter(filter)) {
        return line_error(line_no, "invalid topic filter " + quoted(filter));
      }
      Rule r;
      r.access = access;
      r.filter = std::string(filter);
      if (keyword == "pattern") {
        r.pattern = true;
        r.has_u = filter.find("%u") != std::string_view::npos;
        r.has_c = filter.find("%c") != std::string_view::npos;
        acl.patterns_.add(std::move(r));
      } else if (user) {
        acl.users_[*user].add(std::move(r));
      } else {
        acl.global_.add(std::move(r));
      }
    } else if (keyword == "user") {
      if (rest.empty()) return line_error(line_no, "missing username");
      user = std::string(rest);
    } else {
      return line_error(
          line_no, "unknown keyword " + quoted(keyword) + " (topic, pattern, user or a # comment)");
    }
  }
  return acl;
}

Result<Acl> Acl::load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::not_found, path + ": " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return make_error(Errc::internal, path + ": read error");
  Result<Acl> r = parse(buf.str());
  if (!r) return make_error(r.error().code, path + ": " + r.error().message);
  return r;
}

Acl Acl::default_rules() {
  Acl acl;
  Rule own;
  own.access = kReadWrite;
  own.filter = "app/%u/#";
  own.pattern = true;
  own.has_u = true;
  own.needs_user = true;
  acl.patterns_.add(std::move(own));
  Rule pub;
  pub.access = kRead;
  pub.filter = "app/public/#";
  pub.needs_user = true;
  acl.global_.add(std::move(pub));
  return acl;
}

std::size_t Acl::rule_count() const {
  std::size_t n = global_.size() + patterns_.size();
  for (const auto& [name, set] : users_) n += set.size();
  return n;
}

bool Acl::applies(const Rule& r, const AclClient& client, std::string_view target, Op op,
                  bool deny) {
  if (r.needs_user && !client.username) return false;
  auto hits = [&](std::string_view filter) {
    return op == Op::subscribe ? filter_covers(filter, target) : topic_matches(filter, target);
  };
  if (!r.pattern) return hits(r.filter);
  if (r.has_u && !client.username) return false;  // as mosquitto: %u rules skip anonymous
  const bool safe =
      (!r.has_u || safe_value(*client.username)) && (!r.has_c || safe_value(client.client_id));
  if (!safe) return deny;  // allow: does not apply; deny: denies everything
  return hits(
      substitute(r.filter, r.has_u ? *client.username : std::string_view{}, client.client_id));
}

bool Acl::check(const AclClient& client, std::string_view target, Op op) const {
  const RuleSet* sets[3] = {&global_, nullptr, &patterns_};
  if (client.username) {
    auto it = users_.find(*client.username);
    if (it != users_.end()) sets[1] = &it->second;
  }
  for (const RuleSet* set : sets) {
    if (set == nullptr) continue;
    for (const Rule& r : set->deny)
      if (applies(r, client, target, op, true)) return false;
  }
  const Access need = op == Op::publish ? kWrite : kRead;
  for (const RuleSet* set : sets) {
    if (set == nullptr) continue;
    for (const Rule& r : set->allow)
      if ((r.access & need) != 0 && applies(r, client, target, op, false)) return true;
  }
  return false;
}

bool Acl::can_publish(const AclClient& client, std::string_view topic) const {
  return valid_topic_name(topic) && check(client, topic, Op::publish);
}

bool Acl::can_read(const AclClient& client, std::string_view topic) const {
  return !topic.empty() && check(client, topic, Op::read);
}

bool Acl::can_subscribe(const AclClient& client, std::string_view filter) const {
  if (is_shared(filter)) {
    std::optional<SharedFilter> shared = parse_shared(filter);
    return shared && check(client, shared->filter, Op::subscribe);
  }
  return valid_topic_filter(filter) && check(client, filter, Op::subscribe);
}

}  // namespace converge::mqtt
