#include "gateway/mqtt/bus_route.hpp"

#include <gtest/gtest.h>

namespace {

using namespace converge::mqtt;

TEST(MqttBusRoute, TopicsBecomeRoutingKeysLevelForLevel) {
  EXPECT_EQ(routing_key("a/b/c"), "mqtt.a.b.c");
  EXPECT_EQ(routing_key("a"), "mqtt.a");
  EXPECT_EQ(routing_key("/x"), "mqtt..x");
  EXPECT_EQ(routing_key("a//b"), "mqtt.a..b");
  // A level never splits nor merges: the bytes AMQP reads specially are escaped.
  EXPECT_EQ(routing_key("v1.2/x"), "mqtt.v1%2E2.x");
  EXPECT_EQ(routing_key("100%/*/a#b"), "mqtt.100%25.%2A.a%23b");
  EXPECT_NE(routing_key("a.b/c"), routing_key("a/b/c"));
}

TEST(MqttBusRoute, FiltersBecomeBindingKeys) {
  EXPECT_EQ(binding_key("a/+/c"), "mqtt.a.*.c");
  EXPECT_EQ(binding_key("a/#"), "mqtt.a.#");  // AMQP's # matches no word: "a" too
  EXPECT_EQ(binding_key("#"), "mqtt.#");
  EXPECT_EQ(binding_key("+/+"), "mqtt.*.*");
  EXPECT_EQ(binding_key("a.b/*"), "mqtt.a%2Eb.%2A");
  EXPECT_EQ(binding_key("$share/g/a/+"), "mqtt.a.*");
}

TEST(MqttBusRoute, LongKeysFallBackToWiderOnes) {
  std::string topic(300, 'x');
  EXPECT_EQ(routing_key(topic), kLongKey);
  EXPECT_EQ(binding_key(topic + "/+"), "mqtt.#");
  // Exactly at the limit: still its own key.
  std::string fits(kRoutingKeyMax - 5, 'y');
  EXPECT_EQ(routing_key(fits).size(), kRoutingKeyMax);
}

TEST(MqttBusRoute, DollarTopicsStayOnTheirNode) {
  EXPECT_FALSE(crosses_nodes("$SYS/broker/uptime"));
  EXPECT_FALSE(crosses_nodes("$SYS/#"));
  EXPECT_FALSE(crosses_nodes("$share/g/$SYS/#"));
  EXPECT_TRUE(crosses_nodes("a/b"));
  EXPECT_TRUE(crosses_nodes("$share/g/a/#"));
  EXPECT_TRUE(crosses_nodes("#"));
}

}  // namespace
