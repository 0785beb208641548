#pragma once
// Seed 000's center input: a plain AMQP client publishes the seed envelope
//   {"token": "Tricolor<token>", "cmd": "msg", "id"?: ..., "data": {conversation_id, type, body,
//    client_msg_id?, file_id?}}
// to exchange conversation.outgoing (queue chat-app-message). Whichever node takes it validates
// it, authenticates the token and stores the message like any other send; every member's
// devices and queues then get it through conversation.incoming. When the AMQP message carried a
// reply_to, the node answers there (correlation_id echoed) with the same `ack` or `error` frame a
// WebSocket client gets; either way the broker's copy is acknowledged once handled, so a node
// that dies first leaves it to another (at-least-once; a client_msg_id makes the retry a
// duplicate, not a second message).
#include <cstddef>

#include "bus/bus.hpp"

namespace converge {

class Service;

class CenterGateway {
 public:
  CenterGateway(Service& svc, Bus& bus, std::size_t max_body_bytes)
      : svc_(svc), bus_(bus), max_body_bytes_(max_body_bytes) {}
  // Any thread; the work runs on the service's work pool.
  void handle(CenterRequest r);

 private:
  void answer(const CenterRequest& r, std::string frame);
  Service& svc_;
  Bus& bus_;
  std::size_t max_body_bytes_;
};

}  // namespace converge
