#pragma once
// One MQTT connection's protocol state machine (client.cpp): CONNECT and authentication,
// keepalive, the QoS 0/1/2 flows both ways, flow control (receive maximum), topic aliases both
// ways, maximum packet size, SUBSCRIBE / UNSUBSCRIBE, DISCONNECT, the will. Internal to
// gateway/mqtt. Every method runs on the connection's thread (the Link's).
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gateway/mqtt/broker.hpp"
#include "gateway/mqtt/broker_core.hpp"
#include "gateway/mqtt/codec/codec.hpp"
#include "model/model.hpp"

namespace converge::mqtt {

class ClientImpl final : public Client, public std::enable_shared_from_this<ClientImpl> {
 public:
  ClientImpl(std::shared_ptr<Core> core, std::shared_ptr<Link> link);
  ~ClientImpl() override;

  void on_bytes(std::string_view bytes, int64_t arrived_ns) override;
  void on_closed() override;

  // Posted by the Core.
  void pump();                     // session queue -> inflight window -> the wire
  void deliver_now(Outgoing out);  // a QoS 0 delivery
  void taken_over();               // another connection took the session: DISCONNECT 0x8E
  void shutdown();                 // the broker stops: DISCONNECT 0x8B, no will

 private:
  enum class State { connecting, authenticating, connected, closed };
  // How the connection ends: whether the will is published and what the session becomes.
  enum class End { abnormal, normal, with_will, taken_over, shutdown };

  void drain();
  void handle(Packet&& p);
  void handle_connect(Connect&& c);
  void authenticate();
  void auth_done(std::optional<AuthContext> auth, uint8_t failure, std::string why);
  void complete_connect();
  void attach(std::optional<StoredSession> loaded);  // the session, then CONNACK
  void connack();
  void handle_publish(Publish&& p);
  void publish_done(uint8_t qos, uint16_t packet_id, uint8_t reason, std::string why);
  void im_published(uint8_t qos, uint16_t packet_id, uint8_t reason);
  void handle_ack(const Ack& a);
  void handle_subscribe(Subscribe&& s);
  // What a new subscription is sent after the SUBACK: the retained messages it asks for and
  // the messages that arrived after its SUBSCRIBE and were routed before it (Core::subscribe).
  struct Catchup {
    std::string filter;  // without $share/...
    SubOptions options;
    bool retained = false;
    std::vector<MessagePtr> late;
  };
  uint8_t subscribe_one(const Subscription& sub, uint32_t sub_id, std::vector<Catchup>& catchup,
                        bool& protocol_error);
  void handle_unsubscribe(const Unsubscribe& u);
  void handle_disconnect(const Disconnect& d);
  void malformed();

  // Sends CONNACK `reason` (a refusal) and closes.
  void refuse(uint8_t reason, std::string why);
  // MQTT 5: DISCONNECT `reason`; both versions: close, the will published.
  void fail(uint8_t reason, std::string why);
  void end(End why);
  void close_link();

  bool in_im(std::string_view topic_or_filter) const;
  AclClient acl_client() const;
  bool problem_info() const { return request_problem_info_; }
  void send(const Packet& p);
  void send_ack(PacketType type, uint16_t packet_id, uint8_t reason, std::string why = {});
  // Encodes and writes one delivery; false when it exceeds the client's maximum packet size
  // (then nothing was sent). With the session's mutex held (pump) or not (QoS 0).
  bool send_publish(const Outgoing& o, uint16_t packet_id, bool dup);
  void resend_inflight();
  std::size_t inbound_in_flight();

  std::shared_ptr<Core> core_;
  std::shared_ptr<Link> link_;
  Decoder decoder_;
  int64_t arrived_ns_ = 0;  // of the bytes being handled (on_bytes)
  State state_ = State::connecting;
  Version version_ = Version::v311;

  // From CONNECT.
  std::string client_id_;
  bool assigned_id_ = false;
  bool clean_start_ = true;
  uint16_t keepalive_s_ = 0;
  bool keepalive_capped_ = false;
  std::optional<std::string> username_;  // canonical user id once authenticated
  std::optional<std::string> password_;
  std::optional<Will> will_;
  uint32_t expiry_s_ = 0;  // granted session expiry
  bool expiry_capped_ = false;
  bool connect_expiry_zero_ = true;
  uint32_t client_receive_max_ = 65535;
  std::size_t client_max_packet_ = kMaxPacketBytes;
  uint16_t client_alias_max_ = 0;
  bool request_problem_info_ = false;  // explicitly asked for: reason strings on acks
  bool request_response_info_ = false;
  bool auth_method_ = false;

  std::optional<AuthContext> auth_;
  ClientInfo info_;
  std::shared_ptr<Session> session_;
  bool session_present_ = false;
  bool im_attached_ = false;  // the IM namespace has this connection (until end)

  std::unordered_map<uint16_t, std::string> in_aliases_;   // client -> broker
  std::unordered_map<std::string, uint16_t> out_aliases_;  // broker -> client
  std::size_t pending_im_qos1_ = 0;  // IM QoS 1 publishes awaiting their store
};

}  // namespace converge::mqtt
