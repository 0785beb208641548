#pragma once
// UTF-8 at the node's edges. Every string the node stores or emits is valid UTF-8: a gateway
// refuses input that is not (HTTP 400, WebSocket close 1007) or repairs text it must pass on
// (error messages quoting input), with these helpers and no other.
#include <cstddef>
#include <string>
#include <string_view>

namespace converge {

// Strict RFC 3629: no overlong forms, no surrogates (U+D800-U+DFFF), nothing above U+10FFFF.
bool utf8_valid(std::string_view s);

// `s` with every maximal ill-formed subsequence replaced by U+FFFD (the Unicode "substitution
// of maximal subparts" practice, as browsers' decoders do).
std::string utf8_repair(std::string_view s);

// The longest prefix of `s` of at most `max_bytes` bytes that does not end inside a character
// (for `s` valid UTF-8).
std::string_view utf8_truncate(std::string_view s, std::size_t max_bytes);

// Incremental validation of a message that arrives in pieces (fragmented WebSocket text).
class Utf8Validator {
 public:
  // False as soon as the bytes so far cannot begin valid UTF-8.
  bool feed(std::string_view bytes);
  // True when everything fed is valid and ends on a character boundary.
  bool complete() const { return ok_ && need_ == 0; }
  void reset() { *this = Utf8Validator{}; }

 private:
  bool ok_ = true;
  int need_ = 0;             // continuation bytes still expected
  unsigned char lo_ = 0x80;  // bounds of the next continuation byte (overlong/surrogate limits)
  unsigned char hi_ = 0xBF;
};

}  // namespace converge
