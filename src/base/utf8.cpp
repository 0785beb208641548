#include "base/utf8.hpp"

#include <cstdint>
#include <cstring>

namespace converge {

namespace {

// Length of the valid sequence starting at s[i], or 0 when it is ill-formed; `bad` receives the
// length of the maximal ill-formed subpart (at least 1) when it is.
std::size_t sequence_at(std::string_view s, std::size_t i, std::size_t& bad) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  unsigned char c = p[i];
  int need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    bad = 1;
    return 0;
  }
  std::size_t j = i + 1;
  for (int k = 0; k < need; ++k, ++j) {
    if (j >= n || p[j] < lo || p[j] > hi) {
      bad = j - i;
      return 0;
    }
    lo = 0x80;
    hi = 0xBF;
  }
  return j - i;
}

bool ascii8(const char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return (w & 0x8080808080808080ULL) == 0;
}

}  // namespace

bool utf8_valid(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    if (i + 8 <= n && ascii8(s.data() + i)) {  // most text is ASCII: 8 bytes a step
      i += 8;
      continue;
    }
    std::size_t bad = 0;
    std::size_t len = sequence_at(s, i, bad);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string utf8_repair(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t bad = 0;
    std::size_t len = sequence_at(s, i, bad);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      i += bad;
    } else {
      out.append(s.data() + i, len);
      i += len;
    }
  }
  return out;
}

std::string_view utf8_truncate(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  std::size_t end = max_bytes;
  // Back up over continuation bytes to the start of the character that does not fit.
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return s.substr(0, end);
}

bool Utf8Validator::feed(std::string_view bytes) {
  if (!ok_) return false;
  std::size_t i = 0;
  while (need_ == 0 && i + 8 <= bytes.size() && ascii8(bytes.data() + i)) i += 8;
  for (unsigned char c : bytes.substr(i)) {
    if (need_ > 0) {
      if (c < lo_ || c > hi_) return ok_ = false;
      lo_ = 0x80;
      hi_ = 0xBF;
      --need_;
      continue;
    }
    if (c < 0x80) continue;
    if (c >= 0xC2 && c <= 0xDF) {
      need_ = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need_ = 2;
      if (c == 0xE0) lo_ = 0xA0;
      if (c == 0xED) hi_ = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need_ = 3;
      if (c == 0xF0) lo_ = 0x90;
      if (c == 0xF4) hi_ = 0x8F;
    } else {
      return ok_ = false;
    }
  }
  return true;
}

}  // namespace converge
