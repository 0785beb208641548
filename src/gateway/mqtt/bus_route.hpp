#pragma once
// How the general broker's messages cross a cluster (DESIGN.md section 5): on the bus's
// transient path (a RabbitMQ topic exchange), a node binding one key per distinct filter its
// sessions subscribe to, so that a node receives only the topics it has subscribers for.
//
// An MQTT topic becomes the routing key "mqtt." + its levels joined by '.', each level's bytes
// escaped so that no level splits or merges ('.' -> "%2E", '%' -> "%25", '*' -> "%2A",
// '#' -> "%23"); a filter becomes the binding key of the same form with '+' -> '*' and a
// trailing '#' -> '#' (AMQP's '#' also matches no word, as MQTT's "a/#" matches "a").
// AMQP routing keys are at most 255 bytes: a longer topic goes on kLongKey, which a node binds
// while it has any subscription at all, and a filter whose key would be longer binds "mqtt.#"
// (the receiving node matches every message against its own subscriptions anyway, so a wider
// binding costs traffic, never a wrong delivery). Retained messages (and their clearing) go on
// kRetainKey, which every node binds: each node keeps the whole retained set, and a subscriber
// anywhere gets them. Topics and filters starting with '$' ($SYS/...) stay on their node.
#include <optional>
#include <string>
#include <string_view>

namespace converge::mqtt {

// A client id's session moved to another node: "mqtt-takeover.<node id>" tells the node that
// served it (each node binds its own), payload the client id.
inline constexpr std::string_view kTakeoverPrefix = "mqtt-takeover.";
inline constexpr std::string_view kLongKey = "mqtt-long";
inline constexpr std::string_view kRetainKey = "mqtt-retain";
inline constexpr std::size_t kRoutingKeyMax = 255;

// Whether messages on `topic` / subscriptions to `filter` ("$share/g/f": its filter) cross
// nodes at all.
bool crosses_nodes(std::string_view topic_or_filter);
// The routing key of a message published to `topic` (a valid topic name that crosses nodes).
std::string routing_key(std::string_view topic);
// The binding key for a subscription to `filter` (a valid filter, shared or not, that crosses
// nodes).
std::string binding_key(std::string_view filter);

}  // namespace converge::mqtt
