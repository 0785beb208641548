#include "gateway/http/static_files.hpp"

#include <sys/stat.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "base/utf8.hpp"

namespace converge {

namespace fs = std::filesystem;

const HeaderPair kWebClientHeaders[4] = {
    {"Content-Security-Policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
     "media-src 'self' blob:; connect-src 'self' blob:; object-src 'none'; base-uri 'none'; "
     "form-action 'self'; frame-ancestors 'none'"},
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Referrer-Policy", "no-referrer"},
};

std::string_view mime_for(std::string_view path) {
  auto slash = path.rfind('/');
  auto name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  auto dot = name.rfind('.');
  std::string_view ext = dot == std::string_view::npos ? "" : name.substr(dot + 1);
  if (ext == "html") return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "json" || ext == "map") return "application/json";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "webp") return "image/webp";
  if (ext == "ico") return "image/x-icon";
  if (ext == "txt") return "text/plain; charset=utf-8";
  if (ext == "webmanifest") return "application/manifest+json";
  if (ext == "woff2") return "font/woff2";
  if (ext == "wasm") return "application/wasm";
  return "application/octet-stream";
}

namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Error malformed(const char* why) {
  return make_error(Errc::bad_request, std::string("malformed path: ") + why);
}

Result<std::vector<std::string>> decode_segments(std::string_view p, bool allow_dots) {
  if (p.empty() || p[0] != '/') return malformed("it must start with /");
  std::vector<std::string> out;
  std::size_t i = 1;
  for (;;) {
    auto end = p.find('/', i);
    std::string_view raw = p.substr(i, end == std::string_view::npos ? end : end - i);
    std::string seg;
    seg.reserve(raw.size());
    for (std::size_t k = 0; k < raw.size(); ++k) {
      char c = raw[k];
      if (c == '%') {
        if (k + 2 >= raw.size()) return malformed("bad % escape");
        int hi = hex(raw[k + 1]), lo = hex(raw[k + 2]);
        if (hi < 0 || lo < 0) return malformed("bad % escape");
        c = static_cast<char>(hi * 16 + lo);
        k += 2;
        if (c == '/') return malformed("an encoded / inside a segment");
      }
      if (c == '\0') return malformed("NUL");
      if (c == '\\') return malformed("a backslash");
      seg += c;
    }
    if (!utf8_valid(seg)) return malformed("not UTF-8");
    bool last = end == std::string_view::npos;
    if (seg.empty() && !last) return malformed("an empty segment");
    if (!allow_dots && (seg == "." || seg == "..")) return malformed("a . or .. segment");
    out.push_back(std::move(seg));
    if (last) break;
    i = end + 1;
  }
  return out;
}

bool inside(const std::string& path, const std::string& dir) {
  return !dir.empty() && path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

std::string canonical_or_empty(const std::string& p, bool must_exist) {
  if (p.empty()) return {};
  std::error_code ec;
  fs::path c = must_exist ? fs::canonical(p, ec) : fs::weakly_canonical(p, ec);
  if (ec) return {};
  std::string s = c.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

Status check_path(std::string_view encoded_path, bool allow_dot_segments) {
  auto r = decode_segments(encoded_path, allow_dot_segments);
  if (!r) return r.error();
  return ok_status();
}

StaticFiles::StaticFiles(const std::string& web_root, const std::string& data_dir)
    : root_(canonical_or_empty(web_root, true)), data_(canonical_or_empty(data_dir, false)) {}

Result<StaticFile> StaticFiles::resolve(std::string_view encoded_path) const {
  auto segs = decode_segments(encoded_path, false);
  if (!segs) return segs.error();
  if (!enabled()) return make_error(Errc::not_found, "this node serves no web client");
  auto not_found = [] { return make_error(Errc::not_found, "not found"); };
  std::string joined = root_;
  for (auto& s : segs.value()) {
    if (!s.empty() && s[0] == '.') return not_found();
    if (!s.empty()) joined += "/" + s;
  }
  const std::string& last = segs->back();
  // missing: nothing there (or a directory of the root): the single-page app may answer.
  // refused: something there that must not be served.
  enum class Why { served, missing, refused };
  Why why = Why::missing;
  auto serve = [&](const std::string& candidate) -> Result<StaticFile> {
    char buf[PATH_MAX];
    why = Why::missing;
    if (::realpath(candidate.c_str(), buf) == nullptr) return not_found();
    std::string real(buf);
    why = Why::refused;
    if (!inside(real, root_) || real == data_ || inside(real, data_)) return not_found();
    struct stat st {};
    if (::stat(real.c_str(), &st) != 0) return not_found();
    if (!S_ISREG(st.st_mode)) {
      if (S_ISDIR(st.st_mode)) why = Why::missing;
      return not_found();
    }
    why = Why::served;
    StaticFile f;
    f.mime = std::string(mime_for(real));
    f.index = real.size() >= 11 && real.compare(real.size() - 11, 11, "/index.html") == 0;
    f.path = std::move(real);
    return f;
  };
  if (joined != root_) {
    auto f = serve(joined);
    if (f || why == Why::refused || last.find('.') != std::string::npos) return f;
  }
  // The root, a directory, or an unknown path without an extension: the single-page app.
  return serve(root_ + "/index.html");
}

}  // namespace converge
