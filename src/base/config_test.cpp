#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>

#include "base/config.hpp"

using namespace converge;

TEST(Config, DefaultsMatchTheDesign) {
  Config c;
  EXPECT_EQ(c.listen, "127.0.0.1:8080");
  EXPECT_EQ(c.data_dir, "./data");
  EXPECT_EQ(c.mqtt_listen, "127.0.0.1:1883");
  EXPECT_EQ(c.registration, "open");
  EXPECT_TRUE(config_validate(c));
}

TEST(Config, FileThenEnvThenFlagsInThatOrder) {
  std::string path = ::testing::TempDir() + "/converge_cfg_test.conf";
  {
    std::ofstream f(path);
    f << "# comment\nlisten = 127.0.0.1:9000\n data_dir = \"/tmp/x\" \nheartbeat_timeout_ms = "
         "5000\n";
  }
  Config c;
  ASSERT_TRUE(config_load_file(c, path));
  EXPECT_EQ(c.listen, "127.0.0.1:9000");
  EXPECT_EQ(c.data_dir, "/tmp/x");
  EXPECT_EQ(c.heartbeat_timeout_ms, 5000);
  std::map<std::string, std::string> env{{"CONVERGE_LISTEN", "127.0.0.1:9100"}};
  ASSERT_TRUE(config_load_env(c, [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  }));
  EXPECT_EQ(c.listen, "127.0.0.1:9100");
  EXPECT_EQ(c.data_dir, "/tmp/x");  // not in env: the file's value stays
  ASSERT_TRUE(config_set(c, "listen", "127.0.0.1:9200"));
  EXPECT_EQ(c.listen, "127.0.0.1:9200");
  std::remove(path.c_str());
}

TEST(Config, RejectsBadValuesWithTheKeyNamed) {
  Config c;
  auto s = config_set(c, "heartbeat_timeout_ms", "soon");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("heartbeat_timeout_ms"), std::string::npos);
  EXPECT_FALSE(config_set(c, "no_such_key", "1"));
  EXPECT_FALSE(config_set(c, "max_file_bytes", "0"));  // below its minimum
  ASSERT_TRUE(config_set(c, "registration", "closed"));
  EXPECT_FALSE(config_validate(c));
  c = Config{};
  ASSERT_TRUE(config_set(c, "listen", "nonsense"));
  EXPECT_FALSE(config_validate(c));
  c = Config{};
  c.admin_user = "root";  // without a password
  EXPECT_FALSE(config_validate(c));
}

TEST(Config, MalformedFileLineIsReportedWithItsNumber) {
  std::string path = ::testing::TempDir() + "/converge_cfg_bad.conf";
  {
    std::ofstream f(path);
    f << "listen = 127.0.0.1:1\nthis line has no equals sign\n";
  }
  Config c;
  auto s = config_load_file(c, path);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find(":2:"), std::string::npos);
  std::remove(path.c_str());
}

TEST(Config, SplitHostPort) {
  std::string h;
  uint16_t p = 1;
  ASSERT_TRUE(split_host_port("127.0.0.1:0", h, p));
  EXPECT_EQ(h, "127.0.0.1");
  EXPECT_EQ(p, 0);
  ASSERT_TRUE(split_host_port("[::1]:8080", h, p));
  EXPECT_EQ(h, "::1");
  EXPECT_EQ(p, 8080);
  EXPECT_FALSE(split_host_port("127.0.0.1", h, p));
  EXPECT_FALSE(split_host_port("127.0.0.1:70000", h, p));
}

TEST(Config, MqttKeys) {
  Config c;
  EXPECT_FALSE(c.mqtt_allow_anonymous);
  EXPECT_TRUE(c.mqtt_acl_file.empty());
  EXPECT_EQ(c.mqtt_max_packet_bytes, 1 << 20);
  EXPECT_TRUE(mqtt_tcp_enabled(c));
  ASSERT_TRUE(config_set(c, "mqtt_allow_anonymous", "true"));
  EXPECT_TRUE(c.mqtt_allow_anonymous);
  ASSERT_TRUE(config_set(c, "mqtt_allow_anonymous", "0"));
  EXPECT_FALSE(c.mqtt_allow_anonymous);
  EXPECT_FALSE(config_set(c, "mqtt_allow_anonymous", "maybe"));

  // The TCP listener can be turned off; then mqtt_listen is not an address.
  for (const char* off : {"off", ""}) {
    ASSERT_TRUE(config_set(c, "mqtt_listen", off));
    EXPECT_FALSE(mqtt_tcp_enabled(c));
    EXPECT_TRUE(config_validate(c));
  }
  ASSERT_TRUE(config_set(c, "mqtt_listen", "nonsense"));
  EXPECT_FALSE(config_validate(c));
  ASSERT_TRUE(config_set(c, "mqtt_listen", "127.0.0.1:0"));
  EXPECT_TRUE(config_validate(c));

  ASSERT_TRUE(config_set(c, "mqtt_max_keepalive", "65536"));
  EXPECT_FALSE(config_validate(c));
  ASSERT_TRUE(config_set(c, "mqtt_max_keepalive", "60"));
  EXPECT_TRUE(config_validate(c));
  EXPECT_FALSE(config_set(c, "mqtt_max_keepalive", "-1"));

  // A large MQTT packet limit does not constrain max_send_queue_bytes (MQTT connections' queues
  // are sized from it), nor a small send queue the MQTT limit.
  ASSERT_TRUE(config_set(c, "mqtt_max_packet_bytes", "5000000"));
  EXPECT_TRUE(config_validate(c));
}

TEST(Config, PushKeys) {
  Config c;
  EXPECT_TRUE(c.push_webhook_url.empty());  // push is off by default
  EXPECT_EQ(c.push_retry_max, 6);
  EXPECT_EQ(c.push_batch_max, 100);
  EXPECT_EQ(c.push_preview_chars, 100);
  ASSERT_TRUE(config_set(c, "push_webhook_url", "http://127.0.0.1:9/hook"));
  EXPECT_FALSE(config_validate(c)) << "a URL without a secret";
  ASSERT_TRUE(config_set(c, "push_webhook_secret", "short"));
  EXPECT_FALSE(config_validate(c)) << "a secret under 16 bytes";
  ASSERT_TRUE(config_set(c, "push_webhook_secret", "0123456789abcdef"));
  EXPECT_TRUE(config_validate(c));
  EXPECT_FALSE(config_set(c, "push_retry_max", "0"));
  ASSERT_TRUE(config_set(c, "push_batch_max", "1001"));
  EXPECT_FALSE(config_validate(c));
  ASSERT_TRUE(config_set(c, "push_batch_max", "10"));
  ASSERT_TRUE(config_set(c, "push_retry_base_ms", "5000"));
  ASSERT_TRUE(config_set(c, "push_retry_cap_ms", "1000"));
  EXPECT_FALSE(config_validate(c)) << "a cap below the base";
}
