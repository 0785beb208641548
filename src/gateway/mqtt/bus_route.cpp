#include "gateway/mqtt/bus_route.hpp"

#include "gateway/mqtt/topic.hpp"

namespace converge::mqtt {

namespace {

void escape_level(std::string& out, std::string_view level) {
  for (char c : level) {
    switch (c) {
      case '.':
        out += "%2E";
        break;
      case '%':
        out += "%25";
        break;
      case '*':
        out += "%2A";
        break;
      case '#':
        out += "%23";
        break;
      default:
        out.push_back(c);
    }
  }
}

template <class Level>
std::string join(std::string_view s, Level&& level) {
  std::string out = "mqtt";
  for (;;) {
    out.push_back('.');
    auto slash = s.find('/');
    level(out, s.substr(0, slash));
    if (slash == std::string_view::npos) return out;
    s.remove_prefix(slash + 1);
  }
}

}  // namespace

bool crosses_nodes(std::string_view t) {
  if (auto shared = parse_shared(t)) t = shared->filter;
  return !t.empty() && t.front() != '$';
}

std::string routing_key(std::string_view topic) {
  std::string key = join(topic, escape_level);
  return key.size() > kRoutingKeyMax ? std::string(kLongKey) : key;
}

std::string binding_key(std::string_view filter) {
  std::string inner;
  if (auto shared = parse_shared(filter)) {
    inner = std::move(shared->filter);
    filter = inner;
  }
  std::string key = join(filter, [](std::string& out, std::string_view level) {
    if (level == "+") {
      out.push_back('*');
    } else if (level == "#") {
      out.push_back('#');
    } else {
      escape_level(out, level);
    }
  });
  return key.size() > kRoutingKeyMax ? std::string("mqtt.#") : key;
}

}  // namespace converge::mqtt
