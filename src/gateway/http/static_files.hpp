#pragma once
// The web client's static files: which file, if any, a request path may serve. Free of sockets
// and Beast so that every rule is unit-tested. The rules, in order:
//   1. the raw path is split on '/' and each segment percent-decoded; a segment that decodes to
//      NUL, '/', '\', "." or "..", an empty segment (other than a trailing one), a bad escape or
//      bytes that are not UTF-8 make the request malformed (400);
//   2. a segment starting with '.' (".env", ".git") is hidden (404);
//   3. the file is resolved with every symlink followed and must lie strictly inside the
//      canonical web root and outside the canonical data dir (404 otherwise), and be a regular
//      file; a missing file whose last segment has no '.' is the single-page app's index.html.
// The type comes from the resolved file's name, the one that is opened.
#include <string>
#include <string_view>

#include "base/error.hpp"

namespace converge {

struct StaticFile {
  std::string path;  // canonical, no symlink in it: open it with O_NOFOLLOW
  std::string mime;
  bool index = false;  // index.html: not cached
};

class StaticFiles {
 public:
  // `web_root` empty: serves nothing. Both are made canonical here, once.
  StaticFiles(const std::string& web_root, const std::string& data_dir);
  bool enabled() const { return !root_.empty(); }
  // `encoded_path`: the request target's path, as received (before percent-decoding).
  Result<StaticFile> resolve(std::string_view encoded_path) const;

 private:
  std::string root_;  // canonical, without a trailing '/'
  std::string data_;  // canonical data dir (never served), empty if unknown
};

// Rule 1 alone, for any route: decodes `encoded_path` into segments or refuses it (400).
Status check_path(std::string_view encoded_path, bool allow_dot_segments);

// Headers every page of the web client carries: a strict Content-Security-Policy that the
// built client satisfies, no framing, no sniffing, no referrer.
struct HeaderPair {
  const char* name;
  const char* value;
};
extern const HeaderPair kWebClientHeaders[4];

std::string_view mime_for(std::string_view path);

}  // namespace converge
