#pragma once
// Protocol adapters: how the generator joins a group, publishes and recognises a delivery on each
// server it measures. Converge speaks its own protocol through the project's client; the peers
// are a bare TCP fan-out (the ceiling), a Node `ws` broadcast server and a socket.io server.
// MQTT (any broker on general topics, and Converge's IM namespace) goes through the project's
// MQTT codec: each connection's packets are decoded and answered (CONNACK, SUBACK, PUBACK to a
// QoS 1 delivery) by the adapter, which hands the generator a delivery's payload or a one-word
// event (ready, ack, error).
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "transport.hpp"

namespace converge::bench {

enum class Kind { other, ready, delivery, ack, error, ping };

struct Parsed {
  Kind kind = Kind::other;
  std::string_view body;  // delivery: the message body; ack: the request id
};

struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  // Converge only: the nodes of a cluster, port first among them. Users and conversations are
  // set up through the first; connection i goes to node i % ports.size().
  std::vector<uint16_t> ports;
  // Converge only: how each send's client_msg_id is made. "time": as the SDK's messageId()
  // (clients/js), the clock's milliseconds first, so ids sort in the order they are made;
  // "random": 32 random hex digits, as a client sending UUIDv4s would.
  std::string client_ids = "time";
};

// MQTT adapters only (targets mqtt and mqtt-im).
struct MqttOptions {
  int qos = 0;        // of every PUBLISH and SUBSCRIBE: 0 or 1
  uint16_t port = 0;  // mqtt-im: the node's MQTT port (Endpoint::port is its HTTP port)
  int version = 4;    // protocol level: 4 = MQTT 3.1.1, 5 = MQTT 5
};

class Target {
 public:
  virtual ~Target() = default;
  virtual std::string name() const = 0;
  // Blocking set-up: `groups[g]` lists the connection indices in group g; connection i acts as
  // user i % users.
  virtual Status prepare(const std::vector<std::vector<int>>& groups, int conns, int users) = 0;
  virtual std::shared_ptr<Conn> connect(boost::asio::io_context& io, int conn,
                                        const std::string& local, Conn::Handlers h) = 0;
  virtual std::vector<std::string> on_open(int conn) = 0;
  virtual bool ready_on_open() const = 0;  // else ready when Kind::ready arrives
  virtual std::string publish(int conn, int group, std::string_view body, uint64_t id) = 0;
  virtual Parsed parse(std::string_view frame) const = 0;
  virtual std::string pong(std::string_view) const { return {}; }
  virtual std::string heartbeat() const { return {}; }
  // The server stores messages and acks each once stored (the chat scenario).
  virtual bool stores() const { return false; }
  // A publish is acknowledged on its own (MQTT QoS 1): a publisher's window also counts the
  // publishes not yet acked.
  virtual bool acks_publishes() const { return false; }
  // The node connection `conn` is on (0 for a single server).
  virtual int node_of(int conn) const {
    (void)conn;
    return 0;
  }
  // Bytes a delivery of `frame` (what on_message got: a WebSocket message's payload, a bare TCP
  // frame's, an MQTT PUBLISH's payload) took on the wire from the server to connection of
  // `group`: the frame and its framing (WebSocket header, length prefix, PUBLISH header and
  // topic); 0 when not known.
  virtual std::size_t delivery_wire_bytes(std::string_view frame, int group) const {
    (void)frame;
    (void)group;
    return 0;
  }
  // The body length that makes a delivery to `group` take `wire_bytes` on the wire (the peers:
  // their frames padded to the size of Converge's pushes, --frame-bytes); -1 when this target
  // cannot (Converge: its push is the stored message's JSON around the body).
  virtual int body_for_wire_bytes(int group, int wire_bytes) const {
    (void)group;
    (void)wire_bytes;
    return -1;
  }
  // Converge only: a sync request for the offline catch-up scenario.
  virtual std::string sync_request(uint64_t id, const std::string& cursor, int limit) const {
    (void)id;
    (void)cursor;
    (void)limit;
    return {};
  }
};

// name: converge | tcp | ws | socketio | mqtt | mqtt-im
std::unique_ptr<Target> make_target(const std::string& name, Endpoint ep, MqttOptions mqtt = {});

}  // namespace converge::bench
