#pragma once
// Seed 002's IM over MQTT (DESIGN.md section 3): the `user/...` and `group/...` namespaces,
// served by the same service as every other front.
//
//   publish  user/<to>/inbox/<self>      a message to the direct conversation with <to>
//            group/<gid>/inbox/<self>    a message to group <gid> (conversation id)
//            payload: the send fields as JSON ({"type","body","file_id","client_msg_id"}), or
//            plain UTF-8 text taken as a text body. PUBACK (v5: reason 0x00) once stored; a
//            refusal is reason 0x87 (not yourself, not a member), 0x99 (bad payload), 0x97
//            (rate or size), 0x80 (store unavailable), with a reason string.
//   receive  user/<self>/inbox/<from>    messages of direct conversations, from <from>
//            group/<gid>/inbox/<from>    messages of group <gid>
//            payload: the stored message JSON (as WebSocket's `msg` data), QoS 0 or 1.
// A client subscribes only under user/<self>/ and to groups it is a member of (group/<gid>/...,
// the group level literal); anything else is refused (0x87 / 3.1.1 0x80). Deliveries come in
// seq order per conversation from the device's stream (DeviceStream: gaps filled from the
// store); a delivery moves the device's acked cursor when the client acknowledges it (QoS 1) or
// once it is sent (QoS 0), so a device that reconnects with its session is caught up from the
// store from where it stood. The subscriptions are the broker's session's (kept in the store
// with it): attach hands over those of an earlier connection.
//
// Threads: the broker calls in on the client's thread; each device's stream runs on one hub
// shard's thread, and deliveries go to the client through the broker's Deliver (which posts to
// the client's thread).
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "gateway/mqtt/broker.hpp"

namespace converge {
class Hub;
}

namespace converge::mqtt {

class ImNamespace final : public TopicNamespace {
 public:
  ImNamespace(Service& svc, Hub& hub, Metrics& metrics, std::size_t max_body_bytes);
  ~ImNamespace() override;

  bool owns(std::string_view topic_or_filter) const override;
  void attach(const ClientInfo& c, Subscriptions subscriptions, Deliver deliver,
              std::function<void()> ready) override;
  void detach(const ClientInfo& c) override;
  uint8_t subscribe(const ClientInfo& c, const std::string& filter, uint8_t qos) override;
  void unsubscribe(const ClientInfo& c, const std::string& filter) override;
  void publish(const ClientInfo& c, Publish p, std::function<void(uint8_t reason)> done) override;

  class Device;  // one attached client: its hub sink, stream, cursors and subscriptions

 private:
  std::shared_ptr<Device> find(const ClientInfo& c);
  // group/<gid>/application/<uid>, group/<gid>/invitation/<invitee>/from/<inviter>,
  // user/<to>/application/<from>: a request made or decided.
  void publish_request(const AuthContext& who, const std::vector<std::string_view>& levels,
                       const std::string& payload, std::function<void(uint8_t reason)> done);

  Service& svc_;
  Hub& hub_;
  Metrics& metrics_;
  const std::size_t max_body_bytes_;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Device>> devices_;  // by client id
};

}  // namespace converge::mqtt
