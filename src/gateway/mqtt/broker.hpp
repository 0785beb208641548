#pragma once
// The MQTT broker of a node (DESIGN.md section 3): MQTT 3.1.1 and 5 over TCP and WebSocket.
//
// Layers (dependencies point down):
//   transport  gateway/mqtt/tcp_listener.cpp, the HTTP server's /mqtt WebSocket: bytes in and out
//   broker     this file: one Client per connection (the protocol state machine: CONNECT,
//              keepalive, QoS 0/1/2 flows, flow control, topic aliases, session expiry, wills)
//              and the broker's shared state (sessions by client id, the subscription tree,
//              retained messages, $SYS counters), governed by the ACL (gateway/mqtt/acl.hpp)
//   codec      gateway/mqtt/codec/: packets <-> bytes, no state
//   topics     gateway/mqtt/topic.hpp, sub_tree.hpp: names, filters, matching
// The IM namespaces (user/..., group/...) are not the broker's: it hands whatever falls in them
// to a TopicNamespace (gateway/mqtt/im_namespace.cpp, over the service), which stores, routes
// and delivers IM messages as every other front does.
//
// Threads: every call on a Client, and every Link call, happens on that connection's own thread
// (its IO loop: Link::post). Routing a publish to other clients posts to their threads.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/clock.hpp"
#include "gateway/mqtt/acl.hpp"
#include "gateway/mqtt/codec/packet.hpp"

namespace converge {
class Service;
class Store;
struct Metrics;
struct AuthContext;
}  // namespace converge

namespace converge::mqtt {

// One transport connection, as the broker sees it. Implemented by the TCP and WebSocket
// transports.
class Link {
 public:
  virtual ~Link() = default;
  // Runs `fn` on this connection's thread, after the current handler (from any thread).
  virtual void post(std::function<void()> fn) = 0;
  // On the connection's thread: bytes to send, queued in order (one or several whole packets;
  // the WebSocket transport sends each call as one binary message).
  virtual void write(std::shared_ptr<const std::string> bytes) = 0;
  // On the connection's thread: bytes queued and not yet written (for the slow-consumer cap).
  virtual std::size_t queued_bytes() const = 0;
  // On the connection's thread: flushes what is queued, then closes. No Client call follows
  // but on_closed.
  virtual void close() = 0;
  // The transport closes the connection when no whole control packet arrives for this long
  // (MQTT: 1.5 x the keepalive); zero: never. Set by the broker once CONNECT is handled; before
  // that the transport applies its own connect timeout.
  virtual void set_idle_timeout(std::chrono::milliseconds t) = 0;
  // On the connection's thread: a whole packet arrived, the idle timeout starts over (bytes
  // alone do not: a client trickling a packet a byte at a time is idle).
  virtual void alive() = 0;
  virtual std::string remote_address() const = 0;  // "127.0.0.1:50412", for logs and limits
  virtual const char* transport() const = 0;       // "tcp" or "ws"
};

struct BrokerOptions {
  std::string node_id;
  bool allow_anonymous = false;            // mqtt_allow_anonymous
  uint16_t max_keepalive_s = 0;            // mqtt_max_keepalive: 0 = no cap; else CONNACK's
                                           // Server Keep Alive (v5) when the client asks more
  std::size_t max_packet_bytes = 1 << 20;  // mqtt_max_packet_bytes, both directions (v5 tells)
  uint16_t receive_maximum = 64;           // QoS 1/2 publishes in flight to the broker per client
  uint16_t topic_alias_maximum = 64;       // aliases a client may set (v5)
  std::size_t max_inflight_out = 64;       // QoS 1/2 deliveries awaiting the client's ack
  std::size_t max_queued_messages = 1000;  // per session, offline or over its inflight window
  std::size_t max_queued_bytes = 8 << 20;
  uint32_t max_session_expiry_s = 7 * 24 * 3600;
  std::size_t max_retained = 100000;
  int64_t sys_interval_ms = 10000;  // $SYS/broker/... publishes; 0 = never
  // Where sessions with an expiry are kept beyond this process (session.hpp,
  // make_persistent_session_store); null: in memory only. `sole_node`: no other node shares
  // that store (every session marked connected there was this node's).
  Store* session_store = nullptr;
  bool sole_node = true;
};

// What a namespace handler knows of a client.
struct ClientInfo {
  std::string client_id;
  std::optional<std::string> username;  // the user id, when authenticated
  const AuthContext* auth = nullptr;    // null for an anonymous client
  Version version = Version::v311;
  bool clean_start = true;
};

// A part of the topic tree served by something other than the broker's own routing (the IM
// namespaces). The broker calls it on the client's thread and applies nothing of its own there
// but packet validity.
class TopicNamespace {
 public:
  virtual ~TopicNamespace() = default;
  virtual bool owns(std::string_view topic_or_filter) const = 0;
  // A client's connection has its session (after CONNACK) / is gone. `deliver` sends a
  // PUBLISH to the client (posted to its thread by the broker; `acked` runs once the client
  // acknowledges a QoS 1/2 delivery, or at once for QoS 0). `subscriptions` are the session's
  // filters in this namespace with their granted QoS: what it subscribed to on an earlier
  // connection (perhaps on another node, or before a restart); empty for a new session.
  // `ready` (from any thread) once the namespace delivers whatever is stored from then on: the
  // broker sends CONNACK then. Deliveries come after it.
  using Deliver = std::function<void(Publish, std::function<void()> acked)>;
  using Subscriptions = std::vector<std::pair<std::string, uint8_t>>;
  virtual void attach(const ClientInfo& c, Subscriptions subscriptions, Deliver deliver,
                      std::function<void()> ready) = 0;
  virtual void detach(const ClientInfo& c) = 0;
  // The SUBACK reason code for `filter` (the granted QoS, or a refusal such as 0x87).
  virtual uint8_t subscribe(const ClientInfo& c, const std::string& filter, uint8_t qos) = 0;
  virtual void unsubscribe(const ClientInfo& c, const std::string& filter) = 0;
  // A PUBLISH to a topic it owns. `done(reason)` (from any thread) sends PUBACK/PUBREC with
  // that reason once the message is stored, or the refusal.
  virtual void publish(const ClientInfo& c, Publish p,
                       std::function<void(uint8_t reason)> done) = 0;
};

class Client {
 public:
  virtual ~Client() = default;
  // Decode and handle what arrived. `arrived_ns`: when the kernel received it (the last of
  // these bytes; CLOCK_REALTIME, ns; see arrival_now()), the order the broker applies
  // SUBSCRIBEs and PUBLISHes of different connections in (Core::subscribe).
  virtual void on_bytes(std::string_view bytes, int64_t arrived_ns) = 0;
  virtual void on_closed() = 0;  // the transport is gone: network error, EOF or idle timeout
};

// Now on the clock of the kernel's receive timestamps (CLOCK_REALTIME, ns): the arrival time a
// transport gives when it has no timestamp of the kernel's.
inline int64_t arrival_now() {
  return wall_ns();
}

class Broker {
 public:
  // `im` may be null: then user/... and group/... are refused like any topic the ACL denies.
  Broker(BrokerOptions opts, Service& svc, Metrics& metrics, Acl acl, TopicNamespace* im);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // A new transport connection.
  std::shared_ptr<Client> accept(std::shared_ptr<Link> link);
  void start();  // $SYS timer, session expiry, will delays
  void stop();   // closes every client (wills of a stopping node are not sent)
  // A cluster (BrokerOptions::sole_node false): what another node's broker published on the
  // bus's transient path under `key` ("mqtt...", gateway/mqtt/bus_route.hpp), from any thread:
  // a general-topic message, delivered to this node's subscribers (retained here too) and not
  // sent on; or a session taken over there, whose connection here is closed (0x8E).
  void from_bus(std::string_view key, std::string_view bytes);

 private:
  struct State;
  std::unique_ptr<State> st_;
};

}  // namespace converge::mqtt
