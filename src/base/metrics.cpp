#include "base/metrics.hpp"

#include <fmt/format.h>

namespace converge {

std::size_t metric_shard() {
  static std::atomic<std::size_t> next{0};
  thread_local std::size_t mine = next.fetch_add(1, std::memory_order_relaxed) % kMetricShards;
  return mine;
}

uint64_t Counter::value() const {
  uint64_t s = 0;
  for (auto& slot : slots_) s += slot.v.load(std::memory_order_relaxed);
  return s;
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  for (auto& s : shards_) {
    s = std::make_unique<Shard>();
    s->buckets = std::vector<std::atomic<uint64_t>>(bounds_.size() + 1);
  }
}

void Histogram::observe(double v) {
  auto& s = *shards_[metric_shard()];
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  s.buckets[i].fetch_add(1, std::memory_order_relaxed);
  s.sum_ns.fetch_add(static_cast<uint64_t>(v * 1e9), std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot snap;
  std::vector<uint64_t> counts(bounds_.size() + 1, 0);
  uint64_t sum_ns = 0;
  for (auto& s : shards_) {
    for (std::size_t i = 0; i < counts.size(); ++i)
      counts[i] += s->buckets[i].load(std::memory_order_relaxed);
    sum_ns += s->sum_ns.load(std::memory_order_relaxed);
  }
  uint64_t run = 0;
  for (auto c : counts) {
    run += c;
    snap.cumulative.push_back(run);
  }
  snap.count = run;
  snap.sum = static_cast<double>(sum_ns) / 1e9;
  return snap;
}

namespace {
void counter(std::string& out, const char* name, const char* help, uint64_t v) {
  out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, v);
}
void gauge(std::string& out, const char* name, const char* help, int64_t v) {
  out += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, v);
}
void histogram(std::string& out, const char* name, const char* help, const Histogram& h) {
  auto snap = h.snapshot();
  out += fmt::format("# HELP {0} {1}\n# TYPE {0} histogram\n", name, help);
  for (std::size_t i = 0; i < h.bounds().size(); ++i)
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, h.bounds()[i], snap.cumulative[i]);
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, snap.count,
                     name, snap.sum, name, snap.count);
}
constexpr const char* kMqttPacketNames[16] = {"reserved",  "connect",  "connack",     "publish",
                                              "puback",    "pubrec",   "pubrel",      "pubcomp",
                                              "subscribe", "suback",   "unsubscribe", "unsuback",
                                              "pingreq",   "pingresp", "disconnect",  "auth"};
void mqtt_packets(std::string& out, const char* name, const char* help,
                  const std::array<Counter, 16>& by_type) {
  out += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n", name, help);
  for (std::size_t t = 1; t < by_type.size(); ++t)
    out += fmt::format("{}{{type=\"{}\"}} {}\n", name, kMqttPacketNames[t], by_type[t].value());
}
}  // namespace

std::string Metrics::render_prometheus() const {
  std::string out;
  gauge(out, "converge_ws_connections", "Open WebSocket sessions.", ws_connections.value());
  gauge(out, "converge_http_connections", "Open HTTP connections.", http_connections.value());
  counter(out, "converge_connections_total", "Accepted TCP connections.",
          connections_total.value());
  counter(out, "converge_http_requests_total", "HTTP requests served.",
          http_requests_total.value());
  counter(out, "converge_messages_in_total", "Chat messages received for storing.",
          messages_in_total.value());
  counter(out, "converge_messages_stored_total", "Chat messages committed to the store.",
          messages_stored_total.value());
  counter(out, "converge_messages_duplicate_total",
          "Retried sends answered with the seq already stored.", messages_duplicate_total.value());
  counter(out, "converge_messages_rejected_total", "Chat messages refused before storing.",
          messages_rejected_total.value());
  counter(out, "converge_messages_out_total", "Message frames queued to devices.",
          deliveries_total.value());
  counter(out, "converge_notices_out_total", "Event and broadcast frames queued to devices.",
          notices_total.value());
  counter(out, "converge_errors_total", "Error frames and 4xx/5xx responses sent.",
          errors_total.value());
  counter(out, "converge_slow_consumer_closes_total",
          "Connections closed because their send queue exceeded its limit.",
          slow_consumer_closes_total.value());
  counter(out, "converge_heartbeat_timeouts_total",
          "Connections closed because no frame arrived within the heartbeat timeout.",
          heartbeat_timeouts_total.value());
  counter(out, "converge_rate_limited_total",
          "Calls refused by an abuse limit (429 rate_limited), the full hashing queue included.",
          rate_limited_total.value());
  counter(out, "converge_revoked_closes_total",
          "WebSockets closed (4001) because their token was revoked or expired.",
          revoked_closes_total.value());
  counter(out, "converge_cluster_nodes_lost_total",
          "Other nodes taken for dead because their heartbeats stopped.",
          cluster_nodes_lost_total.value());
  counter(out, "converge_cluster_publish_gaps_total",
          "Heartbeats of other nodes telling that stored messages missed the broker (caught up "
          "from the store).",
          cluster_publish_gaps_total.value());
  counter(out, "converge_center_requests_total",
          "Seed-000 envelopes taken from chat-app-message (plain AMQP clients) and sent on.",
          center_requests_total.value());
  counter(out, "converge_center_redelivered_total",
          "Of those, envelopes the broker had handed out before (the node taking them died).",
          center_redelivered_total.value());
  counter(out, "converge_bus_remote_messages_total",
          "Stored messages received from other nodes through the bus.",
          bus_remote_messages_total.value());
  counter(out, "converge_gap_fills_total",
          "Live deliveries that first read a missing seq range from the store.",
          gap_fills_total.value());
  counter(out, "converge_store_batches_total", "Group-commit batches written.",
          store_batches_total.value());
  histogram(out, "converge_store_commit_seconds",
            "Time from a batch's first job to its commit (the ack waits for this).",
            store_commit_seconds);
  histogram(out, "converge_store_batch_messages", "Chat messages per group-commit batch.",
            store_batch_messages);
  histogram(out, "converge_store_maintain_seconds",
            "The writer's pauses between batches to finish a WAL checkpoint (the next batch "
            "waits).",
            store_maintain_seconds);
  counter(out, "converge_bus_published_total",
          "Messages, notices, transient frames and replies handed to the message broker.",
          bus_published_total.value());
  counter(out, "converge_bus_dropped_total",
          "Bus publishes dropped: the publisher queue was full or the broker unreachable.",
          bus_dropped_total.value());
  counter(out, "converge_bus_received_total", "Deliveries taken from this node's bus queues.",
          bus_received_total.value());
  counter(out, "converge_bus_reconnects_total",
          "Message broker connections re-established after a loss.", bus_reconnects_total.value());
  gauge(out, "converge_bus_connected", "1 while the bus has its message broker.",
        bus_connected.value());
  gauge(out, "converge_mqtt_connections", "Open MQTT connections (past CONNACK).",
        mqtt_connections.value());
  mqtt_packets(out, "converge_mqtt_packets_in_total", "MQTT control packets received, by type.",
               mqtt_packets_in);
  mqtt_packets(out, "converge_mqtt_packets_out_total", "MQTT control packets sent, by type.",
               mqtt_packets_out);
  counter(out, "converge_mqtt_refused_total",
          "MQTT publishes, subscriptions and deliveries refused by the ACL.",
          mqtt_refused_total.value());
  counter(out, "converge_mqtt_dropped_total",
          "MQTT deliveries dropped (slow consumer, full queue, over the client's maximum packet "
          "size, expired).",
          mqtt_dropped_total.value());
  counter(out, "converge_mqtt_malformed_total",
          "MQTT connections closed for a malformed packet or a protocol error.",
          mqtt_malformed_total.value());
  counter(out, "converge_mqtt_bus_out_total",
          "General-topic MQTT messages published to the other nodes of the cluster.",
          mqtt_bus_out_total.value());
  counter(out, "converge_mqtt_bus_in_total",
          "General-topic MQTT messages received from the other nodes of the cluster.",
          mqtt_bus_in_total.value());
  counter(out, "converge_push_queued_total", "Stored messages handed to the push worker's queue.",
          push_queued_total.value());
  counter(out, "converge_push_spilled_total",
          "Stored messages the full push queue did not take (pushed from the store's outbox).",
          push_spilled_total.value());
  gauge(out, "converge_push_queue_depth", "Stored messages waiting in the push queue.",
        push_queue_depth.value());
  counter(out, "converge_push_sent_total", "Pushes delivered (the webhook answered 2xx).",
          push_sent_total.value());
  counter(out, "converge_push_retried_total",
          "Pushes whose try failed and that were scheduled again.", push_retried_total.value());
  counter(out, "converge_push_dead_letters_total",
          "Pushes given up after push_retry_max tries (GET /api/v1/admin/push/dead-letters).",
          push_dead_letters_total.value());
  counter(out, "converge_push_skipped_online_total",
          "Pushes not sent because the user had a device online.",
          push_skipped_online_total.value());
  counter(out, "converge_push_skipped_muted_total",
          "Pushes not sent because the user muted the conversation and was not mentioned.",
          push_skipped_muted_total.value());
  counter(out, "converge_push_requests_total", "Webhook POSTs.", push_requests_total.value());
  counter(out, "converge_push_request_failures_total",
          "Webhook POSTs answered with a non-2xx status, refused or timed out.",
          push_request_failures_total.value());
  counter(out, "converge_push_adopted_total",
          "Push outbox and pending rows taken over from nodes taken for dead.",
          push_adopted_total.value());
  histogram(out, "converge_push_request_seconds", "Time of a webhook POST.", push_request_seconds);
  static constexpr const char* kKinds[] = {"application", "invitation", "friend_request"};
  const struct {
    const char* name;
    const char* help;
    const std::array<Counter, 3>* c;
  } families[] = {
      {"converge_requests_made_total",
       "Join applications, invitations and friend requests stored pending.", &requests_made_total},
      {"converge_requests_approved_total", "Requests approved or accepted.",
       &requests_approved_total},
      {"converge_requests_declined_total", "Requests declined.", &requests_declined_total},
  };
  for (auto& f : families) {
    out += std::string("# HELP ") + f.name + " " + f.help + "\n# TYPE " + f.name + " counter\n";
    for (std::size_t i = 0; i < 3; ++i)
      out += std::string(f.name) + "{kind=\"" + kKinds[i] + "\"} " +
             std::to_string((*f.c)[i].value()) + "\n";
  }
  counter(out, "converge_voice_frames_in_total", "Audio frames from voice room members here.",
          voice_frames_in_total.value());
  counter(out, "converge_voice_frames_out_total", "Audio frames queued to listeners here.",
          voice_frames_out_total.value());
  counter(out, "converge_voice_frames_remote_total",
          "Audio frames from voice room members on other nodes.",
          voice_frames_remote_total.value());
  {
    static constexpr const char* kReasons[] = {"malformed", "not_joined", "muted",
                                               "throttled", "slow",       "late"};
    out +=
        "# HELP converge_voice_dropped_total Audio frames dropped, by reason.\n"
        "# TYPE converge_voice_dropped_total counter\n";
    for (std::size_t i = 0; i < std::size(kReasons); ++i)
      out += std::string("converge_voice_dropped_total{reason=\"") + kReasons[i] + "\"} " +
             std::to_string(voice_dropped_total[i].value()) + "\n";
  }
  gauge(out, "converge_voice_members", "Voice room members connected here.", voice_members.value());
  counter(out, "converge_system_messages_total",
          "A group's changes stored as system messages (type system).",
          system_messages_total.value());
  return out;
}

}  // namespace converge
