// $SYS/broker/... (mosquitto's names): the broker's counters as retained messages, published
// every sys_interval_ms by the timer thread. Clients read them with "$SYS/#" (the ACL must
// grant it: "#" does not match `$` topics); they cannot publish there.
#include <string>
#include <utility>
#include <vector>

#include "gateway/mqtt/broker_core.hpp"

namespace converge::mqtt {

void Core::publish_sys() {
  auto up = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count();
  std::size_t sessions, subscriptions, retained;
  {
    std::lock_guard lk(mu_);
    sessions = store_->size();
    subscriptions = subs_.size();
    retained = retained_.size();
  }
  const std::vector<std::pair<const char*, std::string>> values = {
      {"version", "converge"},
      {"uptime", std::to_string(up) + " seconds"},
      {"clients/connected", std::to_string(stats.connected.load())},
      {"clients/total", std::to_string(sessions)},
      {"messages/received", std::to_string(stats.messages_received.load())},
      {"messages/sent", std::to_string(stats.messages_sent.load())},
      {"messages/dropped", std::to_string(stats.dropped.load())},
      {"messages/refused", std::to_string(stats.refused.load())},
      {"subscriptions/count", std::to_string(subscriptions)},
      {"retained messages/count", std::to_string(retained)},
      {"bytes/received", std::to_string(stats.bytes_received.load())},
      {"bytes/sent", std::to_string(stats.bytes_sent.load())},
  };
  for (const auto& [name, value] : values) {
    auto m = std::make_shared<Message>();
    m->topic = std::string("$SYS/broker/") + name;
    m->payload = value;
    m->retain = true;
    publish(m);
  }
}

}  // namespace converge::mqtt
