#pragma once
// The cluster's bus engine: RabbitMQ through rabbitmq-c, on seed 000's topology (DESIGN.md
// section 5; the full list of names is at the top of rabbitmq_bus.cpp).
//
// Two threads, each with its own connection:
//  - "bus-publish" publishes everything (stored messages, notices, transient frames, backend
//    notifications, replies) on a channel in confirm mode. A bounded queue stands in front of it,
//    so a publish never blocks the caller (the store's writer thread); what does not fit, or
//    arrives while the broker is away, is dropped and counted (the store is the truth: a node
//    heals a gap from it).
//  - "bus-consume" owns this node's queues (converge.node.<id> and its .transient twin, exclusive
//    to its connection), applies the bind_* requests, consumes, and calls the listener: every
//    BusListener callback but on_deliveries / on_notice (those run at once on the publishing
//    thread, as in the local engine) comes from this thread.
// Either connection lost: both reconnect with backoff (100 ms doubling to 5 s), declare the
// topology, the node's queues and every current binding again, then on_bus_restored() follows.
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/error.hpp"
#include "bus/bus.hpp"

namespace converge {

struct Metrics;

struct RabbitMqOptions {
  // amqp://user:password@127.0.0.1:5672/vhost (vhost "/" when the path is empty or "/"; %2f
  // is "/" too).
  std::string url;
  // This node's id: its queue names (converge.node.<node_id>) and the x-converge-node header by
  // which it drops its own publishes. 1-128 of [A-Za-z0-9_.@-], unique in the cluster.
  std::string node_id;
  Metrics* metrics = nullptr;  // bus_* counters and the bus_connected gauge; may be null

  // Called on the publisher thread (so: thread-safe, no blocking). The body published for a
  // stored message (the seed-000 envelope {"cmd":"msg","data":{...}} plain AMQP clients read);
  // null: not published (counted as dropped).
  std::function<std::shared_ptr<const std::string>(const Delivery&)> message_frame;
  // The body published for a notice (the JSON envelope), and its inverse, called on the consumer
  // thread for what other nodes published: null if unreadable (logged, dropped).
  std::function<std::string(const Notice&)> encode_notice;
  std::function<std::shared_ptr<const Notice>(std::string_view)> decode_notice;

  // Items (messages, notices, frames, replies) waiting for the publisher thread; more are
  // dropped and counted in bus_dropped_total.
  std::size_t publish_queue_max = 100000;
  // Transient frames among them: a smaller bound, so that voice never crowds out messages.
  std::size_t transient_queue_max = 10000;
  // Unacked center requests (chat-app-message) the broker hands this node at once.
  int prefetch = 256;
  // make_rabbitmq_bus fails when the broker is not reached within this time (wrong URL, wrong
  // credentials, broker down): a node that starts without its broker is misconfigured.
  int start_timeout_ms = 10000;
  // How long publish_backend waits for the broker's confirm.
  int confirm_timeout_ms = 5000;
};

// Connects (both threads) before returning. bad_request: the options are unusable (URL, node
// id, a callback missing); unavailable: the broker was not reached within start_timeout_ms.
Result<std::unique_ptr<Bus>> make_rabbitmq_bus(RabbitMqOptions options);

}  // namespace converge
