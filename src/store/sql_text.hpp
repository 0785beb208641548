#pragma once
// What both engines compute the same way around their SQL (not part of the store interface):
// the directory search's LIKE patterns, a friend pair's order, a member's role.
#include <string>
#include <string_view>
#include <utility>

#include "model/model.hpp"

namespace converge::store_text {

// The query of search_users as a LIKE operand: ASCII folded to lower case (the engines compare
// it with lower() of the column, which folds ASCII only), and LIKE's own characters (`%`, `_`
// and the escape `\`) escaped, so that each stands for itself. Used with ESCAPE '\'.
inline std::string like_operand(std::string_view query) {
  std::string out;
  out.reserve(query.size());
  for (char ch : query) {
    if (ch == '%' || ch == '_' || ch == '\\') out.push_back('\\');
    out.push_back(ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch);
  }
  return out;
}

// A friendship's row: the pair in byte order (user_a < user_b), as both engines compare ids
// (SQLite's BINARY, PostgreSQL's COLLATE "C").
inline std::pair<std::string_view, std::string_view> friend_pair(std::string_view a,
                                                                 std::string_view b) {
  return a < b ? std::pair{a, b} : std::pair{b, a};
}

// A member's role as a read gives it: the conversation's owner is `owner` whatever its row says;
// anyone else is what the row says (`admin`), or `member`.
inline Role member_role(std::string_view owner, std::string_view user_id,
                        std::string_view row_role) {
  if (user_id == owner) return Role::owner;
  return row_role == "admin" ? Role::admin : Role::member;
}

// The row value a member's role is stored as: the owner is the conversation's, never a row's.
inline std::string_view row_role_name(Role r) {
  return r == Role::admin ? role_name(Role::admin) : role_name(Role::member);
}

}  // namespace converge::store_text
