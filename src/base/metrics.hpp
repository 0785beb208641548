#pragma once
// Prometheus metrics without a lock or a shared cache line on the per-message path: counters are
// sharded by thread (each thread bumps its own padded slot) and summed only when scraped.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace converge {

inline constexpr std::size_t kMetricShards = 16;
std::size_t metric_shard();  // this thread's slot, fixed for its lifetime

struct alignas(64) PaddedCounter {
  std::atomic<uint64_t> v{0};
};

class Counter {
 public:
  void add(uint64_t n = 1) { slots_[metric_shard()].v.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const;

 private:
  std::array<PaddedCounter, kMetricShards> slots_;
};

class Gauge {
 public:
  void add(int64_t n) { v_.fetch_add(n, std::memory_order_relaxed); }
  void set(int64_t n) { v_.store(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Fixed upper bounds in seconds; observations are sharded like counters.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double seconds);
  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  struct alignas(64) Shard {
    std::vector<std::atomic<uint64_t>> buckets;
    std::atomic<uint64_t> sum_ns{0};
  };
  std::vector<double> bounds_;
  std::array<std::unique_ptr<Shard>, kMetricShards> shards_;
};

// Every metric the node exports. One instance per process, created by app and handed down.
// Why an audio frame was dropped (Metrics::voice_dropped_total).
inline constexpr std::size_t kVoiceDropMalformed = 0;  // not a frame of DESIGN.md section 7
inline constexpr std::size_t kVoiceDropNotJoined = 1;  // for a room the connection is not in
inline constexpr std::size_t kVoiceDropMuted = 2;      // from a muted member
inline constexpr std::size_t kVoiceDropThrottled = 3;  // over voice_max_frames_per_s
inline constexpr std::size_t kVoiceDropSlow = 4;       // a listener behind (its queue full)
inline constexpr std::size_t kVoiceDropLate = 5;  // queued for a listener past voice_max_delay_ms

struct Metrics {
  Gauge ws_connections;       // open WebSocket sessions
  Gauge http_connections;     // open HTTP (non-upgraded) connections
  Counter connections_total;  // accepted TCP connections
  Counter http_requests_total;
  Counter messages_in_total;      // chat messages accepted for storing
  Counter messages_stored_total;  // chat messages committed (duplicates excluded)
  Counter messages_duplicate_total;
  Counter messages_rejected_total;
  Counter deliveries_total;  // message frames queued to devices (fan-out)
  Counter notices_total;     // events and broadcasts queued to devices
  Counter errors_total;      // error frames / 4xx-5xx responses sent
  Counter slow_consumer_closes_total;
  Counter heartbeat_timeouts_total;
  Counter rate_limited_total;    // calls refused by an abuse limit (429), hashing queue included
  Counter revoked_closes_total;  // WebSockets closed because their token was revoked or expired
  Counter bus_remote_messages_total;   // stored messages received from other nodes
  Counter cluster_nodes_lost_total;    // other nodes taken for dead (their heartbeats stopped)
  Counter cluster_publish_gaps_total;  // other nodes' heartbeats telling of lost publishes
  Counter center_requests_total;       // seed-000 envelopes from plain AMQP clients, sent on
  Counter center_redelivered_total;    // of which the broker had handed out before (a node died)
  Counter gap_fills_total;  // live deliveries that had to read a missing range from the store
  Counter store_batches_total;
  // The writer's timings: 100 µs to 1 s.
  static std::vector<double> store_seconds_bounds() {
    return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
  }
  Histogram store_commit_seconds{store_seconds_bounds()};
  Histogram store_batch_messages{{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}};
  // The writer's pauses between batches for the store's housekeeping (SQLite: the end of a
  // checkpoint, so that the WAL starts over); the next batch waits for them.
  Histogram store_maintain_seconds{store_seconds_bounds()};
  // The RabbitMQ bus (bus/rabbitmq): what crossed the broker, and what did not.
  Counter bus_published_total;   // messages, notices, frames, replies handed to the broker
  Counter bus_dropped_total;     // not published: publisher queue full, or broker unreachable
  Counter bus_received_total;    // deliveries taken from this node's queues
  Counter bus_reconnects_total;  // broker connections re-established after a loss
  Gauge bus_connected;           // 1 while both of the engine's connections are up
  // The MQTT broker (gateway/mqtt): packets by control packet type (index 1..15, MQTT's type
  // number; rendered as converge_mqtt_packets_{in,out}_total{type="publish"}).
  Gauge mqtt_connections;  // MQTT connections past CONNACK
  std::array<Counter, 16> mqtt_packets_in;
  std::array<Counter, 16> mqtt_packets_out;
  Counter mqtt_refused_total;  // publishes, subscriptions and deliveries the ACL refused
  Counter mqtt_dropped_total;  // deliveries dropped: slow consumer, queue full, too large, expired
  Counter mqtt_malformed_total;  // connections closed for a malformed packet or protocol error
  Counter mqtt_bus_out_total;    // general-topic messages sent to the other nodes (cluster)
  Counter mqtt_bus_in_total;     // and received from them

  // Offline push (service/push.hpp): the worker's queue, and what became of the pushes.
  Counter push_queued_total;          // stored messages handed to the push queue
  Counter push_spilled_total;         // ... that did not fit (queue full): read back from the store
  Gauge push_queue_depth;             // messages waiting in the push queue
  Counter push_sent_total;            // pushes delivered (the webhook answered 2xx)
  Counter push_retried_total;         // pushes whose try failed, scheduled again
  Counter push_dead_letters_total;    // pushes given up after push_retry_max tries
  Counter push_skipped_online_total;  // pushes not sent: the user had a device online
  Counter push_skipped_muted_total;   // pushes not sent: muted conversation, no mention
  Counter push_requests_total;        // webhook POSTs
  Counter push_request_failures_total;  // ... answered non-2xx, or not answered in time
  Counter push_adopted_total;           // outbox and pending rows taken over from dead nodes
  Histogram push_request_seconds{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};

  // Groups (service/groups.cpp): requests by kind (application, invitation, friend request).
  std::array<Counter, 3> requests_made_total;      // pending requests stored
  std::array<Counter, 3> requests_approved_total;  // approved or accepted
  std::array<Counter, 3> requests_declined_total;
  Counter system_messages_total;  // a group's changes stored as system messages

  // Voice rooms (service/rooms.hpp): audio frames, and the ones dropped, by reason.
  Counter voice_frames_in_total;               // binary frames from this node's members
  Counter voice_frames_out_total;              // frames queued to listeners here
  Counter voice_frames_remote_total;           // frames from members on other nodes
  std::array<Counter, 6> voice_dropped_total;  // by kVoiceDrop*
  Gauge voice_members;                         // room members connected here

  std::string render_prometheus() const;
};

}  // namespace converge
