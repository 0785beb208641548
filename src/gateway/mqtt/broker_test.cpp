// The broker driven through test Links with packets built by the codec, on a real Service
// (SQLite in a temp dir). Every Link posts to the fixture's one loop, which the test drains:
// everything runs on the test thread but the service's pools and the broker's timer, which post
// back to it. The cases mirror the Eclipse Paho interoperability suites (client_test.py,
// client_test5.py) and mosquitto's test/broker cases.
#include "gateway/mqtt/broker.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <thread>

#include "gateway/mqtt/codec/codec.hpp"
#include "service/test_fixture.hpp"

namespace converge::mqtt {
namespace {

using namespace std::chrono_literals;
using testing::ManualLoop;
constexpr Version v5 = Version::v5;
constexpr Version v311 = Version::v311;

class TestLink final : public Link {
 public:
  explicit TestLink(ManualLoop& l) : loop(l) {}
  void post(std::function<void()> fn) override { loop.post(std::move(fn)); }
  void write(std::shared_ptr<const std::string> b) override {
    out += *b;
    writes.push_back(b->size());
  }
  std::size_t queued_bytes() const override { return queued; }
  void close() override { closed = true; }
  void set_idle_timeout(std::chrono::milliseconds t) override { idle = t; }
  void alive() override {}
  std::string remote_address() const override { return "127.0.0.1:50000"; }
  const char* transport() const override { return "test"; }

  ManualLoop& loop;
  std::string out;
  std::vector<std::size_t> writes;
  bool closed = false;
  std::chrono::milliseconds idle{-1};
  std::size_t queued = 0;
};

// A test client: its Link, the broker's Client, and what the broker wrote, decoded.
struct TC {
  TC(Broker& b, ManualLoop& l, Version ver)
      : link(std::make_shared<TestLink>(l)),
        client(b.accept(link)),
        v(ver),
        dec(Decoder::for_client(ver)) {}
  // What it sends arrives at `at` (the kernel's receive time a TCP link gives), else now.
  void send(const Packet& p) { client->on_bytes(encode(p, v), at != 0 ? at : arrival_now()); }
  void raw(std::string_view bytes) { client->on_bytes(bytes, at != 0 ? at : arrival_now()); }
  int64_t at = 0;
  void poll() {
    if (!link->out.empty()) {
      dec.feed(link->out);
      link->out.clear();
    }
    while (auto p = dec.next()) got.push_back(std::move(*p));
  }
  void drop() {  // the network connection is lost
    link->closed = true;
    client->on_closed();
  }
  void ack(PacketType t, uint16_t id) {
    Ack a;
    a.type = t;
    a.packet_id = id;
    send(a);
  }

  std::shared_ptr<TestLink> link;
  std::shared_ptr<Client> client;
  Version v;
  Decoder dec;
  std::deque<Packet> got;
};

BrokerOptions test_options() {
  BrokerOptions o;
  o.node_id = "n1";
  o.allow_anonymous = true;
  o.max_keepalive_s = 60;
  o.sys_interval_ms = 0;
  return o;
}

constexpr const char* kPahoAcl = "topic readwrite #\ntopic deny test/nosubscribe\n";

class MqttBrokerTest : public testing::ServiceFixture {
 protected:
  void make(BrokerOptions o = test_options(), const std::string& acl = kPahoAcl,
            TopicNamespace* im = nullptr) {
    auto a = Acl::parse(acl);
    ASSERT_TRUE(a) << a.error().message;
    broker_ = std::make_unique<Broker>(o, *svc_, metrics_, std::move(a.value()), im);
    broker_->start();
  }
  void TearDown() override {
    if (broker_) broker_->stop();
    drain();
    broker_.reset();
    ServiceFixture::TearDown();
  }
  void drain(std::chrono::milliseconds t = 30ms) {
    loop_.run_until([] { return false; }, t);
  }

  template <class T>
  static std::optional<T> take(TC& c, const std::function<bool(const T&)>& pred) {
    for (auto it = c.got.begin(); it != c.got.end(); ++it) {
      if (auto* t = std::get_if<T>(&*it); t != nullptr && (!pred || pred(*t))) {
        T v = std::move(*t);
        c.got.erase(it);
        return v;
      }
    }
    return std::nullopt;
  }
  // The first packet of type T (matching `pred`) the client got, waiting for it.
  template <class T>
  T next(TC& c, std::function<bool(const T&)> pred = {}, std::chrono::milliseconds t = 3s) {
    std::optional<T> r;
    loop_.run_until(
        [&] {
          c.poll();
          r = take<T>(c, pred);
          return r.has_value();
        },
        t);
    if (!r) {
      ADD_FAILURE() << "expected packet did not arrive (" << c.got.size() << " others)";
      return T{};
    }
    return std::move(*r);
  }
  Ack ack(TC& c, PacketType t) {
    return next<Ack>(c, [t](const Ack& a) { return a.type == t; });
  }
  // True when nothing more arrives within `t`.
  bool quiet(TC& c, std::chrono::milliseconds t = 100ms) {
    drain(t);
    c.poll();
    return c.got.empty();
  }
  // A PUBLISH delivered to `c`, acknowledged through its whole flow.
  Publish recv(TC& c, bool acknowledge = true) {
    auto p = next<Publish>(c);
    if (!acknowledge) return p;
    if (p.qos == 1) c.ack(PacketType::puback, p.packet_id);
    if (p.qos == 2) {
      c.ack(PacketType::pubrec, p.packet_id);
      EXPECT_EQ(ack(c, PacketType::pubrel).packet_id, p.packet_id);
      c.ack(PacketType::pubcomp, p.packet_id);
    }
    return p;
  }

  std::unique_ptr<TC> conn(const std::string& id, Version v = v5,
                           const std::function<void(Connect&)>& tweak = {}, uint8_t rc = 0,
                           Connack* out = nullptr) {
    auto c = std::make_unique<TC>(*broker_, loop_, v);
    Connect k;
    k.version = v;
    k.client_id = id;
    if (tweak) tweak(k);
    c->send(k);
    auto a = next<Connack>(*c);
    EXPECT_EQ(a.reason_code, rc) << id;
    if (out != nullptr) *out = a;
    return c;
  }
  Suback sub(TC& c, const std::string& filter, uint8_t qos, uint32_t sub_id = 0,
             const std::function<void(SubscriptionOptions&)>& tweak = {}) {
    Subscribe s;
    s.packet_id = next_id_++;
    Subscription one;
    one.filter = filter;
    one.options.qos = qos;
    if (tweak) tweak(one.options);
    s.subscriptions.push_back(one);
    if (sub_id != 0) s.properties.subscription_identifiers.push_back(sub_id);
    c.send(s);
    auto a = next<Suback>(c);
    EXPECT_EQ(a.packet_id, s.packet_id);
    return a;
  }
  // Publishes and completes the client's side of the QoS flow; returns the PUBACK/PUBREC
  // reason code (0 for QoS 0).
  uint8_t pub(TC& c, const std::string& topic, const std::string& payload, uint8_t qos,
              bool retain = false, const Properties& props = {}) {
    Publish p;
    p.topic = topic;
    p.payload = payload;
    p.qos = qos;
    p.retain = retain;
    p.packet_id = qos > 0 ? next_id_++ : 0;
    p.properties = props;
    c.send(p);
    if (qos == 1) return ack(c, PacketType::puback).reason_code;
    if (qos == 2) {
      auto rec = ack(c, PacketType::pubrec);
      EXPECT_EQ(rec.packet_id, p.packet_id);
      if (rec.reason_code >= 0x80) return rec.reason_code;
      c.ack(PacketType::pubrel, p.packet_id);
      EXPECT_EQ(ack(c, PacketType::pubcomp).packet_id, p.packet_id);
      return rec.reason_code;
    }
    return 0;
  }

  std::unique_ptr<Broker> broker_;
  uint16_t next_id_ = 1;
};

// --- CONNECT ---

TEST_F(MqttBrokerTest, ConnackAdvertisesLimitsAndCapsKeepAlive) {
  make();
  Connack a;
  auto c = conn(
      "c1", v5, [](Connect& k) { k.keep_alive = 120; }, 0, &a);
  EXPECT_FALSE(a.session_present);
  EXPECT_EQ(a.properties.server_keep_alive, 60);
  EXPECT_EQ(a.properties.receive_maximum, 64);
  EXPECT_EQ(a.properties.topic_alias_maximum, 64);
  EXPECT_EQ(a.properties.maximum_packet_size, 1u << 20);
  EXPECT_EQ(a.properties.retain_available, true);
  EXPECT_EQ(a.properties.wildcard_subscription_available, true);
  EXPECT_EQ(a.properties.subscription_identifier_available, true);
  EXPECT_EQ(a.properties.shared_subscription_available, true);
  EXPECT_FALSE(a.properties.maximum_qos.has_value());  // absent: QoS 2
  EXPECT_EQ(c->link->idle, 90s);

  auto d = conn("c2", v311, [](Connect& k) { k.keep_alive = 5; });
  EXPECT_EQ(d->link->idle, 7500ms);
  auto e = conn("c3", v311);  // 3.1.1 keep alive 0: none
  EXPECT_EQ(e->link->idle, 0ms);
}

TEST_F(MqttBrokerTest, EmptyClientId) {
  make();
  Connack a;
  auto c = conn(
      "", v5, [](Connect& k) { k.clean_start = false; }, 0, &a);
  ASSERT_TRUE(a.properties.assigned_client_identifier.has_value());
  EXPECT_FALSE(a.properties.assigned_client_identifier->empty());
  // 3.1.1: only with a clean session (else return code 2, identifier rejected).
  auto d = conn(
      "", v311, [](Connect& k) { k.clean_start = false; }, reason::client_identifier_not_valid);
  EXPECT_TRUE(d->link->closed);
  auto e = conn("", v311);
  EXPECT_FALSE(e->link->closed);
}

TEST_F(MqttBrokerTest, AnonymousRefusedUnlessAllowed) {
  auto o = test_options();
  o.allow_anonymous = false;
  make(o);
  auto c = conn("c1", v5, {}, reason::not_authorized);
  EXPECT_TRUE(c->link->closed);
  auto d = conn("c2", v311, {}, reason::not_authorized);  // return code 5 on the wire
  EXPECT_TRUE(d->link->closed);
}

TEST_F(MqttBrokerTest, AuthenticatesWithPasswordOrToken) {
  auto o = test_options();
  o.allow_anonymous = false;
  make(o);
  ASSERT_TRUE(svc_->register_user("alice", "", "pw", false, false));
  ASSERT_TRUE(svc_->register_user("bob", "", "pw2", false, false));
  auto token = svc_->login("alice", "pw", "tok-device");
  ASSERT_TRUE(token);

  auto with = [](std::string u, std::string p) {
    return [u, p](Connect& k) {
      k.username = u;
      k.password = p;
    };
  };
  auto c1 = conn("phone", v5, with("alice", "pw"));
  EXPECT_FALSE(c1->link->closed);
  auto c2 = conn("tablet", v311, with("Alice", token->token));  // user ids fold case
  EXPECT_FALSE(c2->link->closed);
  auto c3 = conn("x", v5, with("alice", "wrong"), reason::bad_user_name_or_password);
  EXPECT_TRUE(c3->link->closed);
  auto c4 = conn("y", v5, with("bob", token->token), reason::bad_user_name_or_password);
  EXPECT_TRUE(c4->link->closed);
  auto c5 = conn(
      "z", v5, [](Connect& k) { k.username = "alice"; },
      reason::bad_user_name_or_password);  // no password

  // Packets sent right behind the CONNECT wait for the authentication.
  auto c6 = std::make_unique<TC>(*broker_, loop_, v5);
  Connect k;
  k.client_id = "laptop";
  k.username = "alice";
  k.password = "pw";
  Subscribe s;
  s.packet_id = 7;
  s.subscriptions.push_back(Subscription{"app/alice/x", {1}});
  c6->raw(encode(k, v5) + encode(s, v5));
  EXPECT_EQ(next<Connack>(*c6).reason_code, 0);
  auto sa = next<Suback>(*c6);
  EXPECT_EQ(sa.packet_id, 7);
  EXPECT_EQ(sa.reason_codes, std::vector<uint8_t>{1});
}

TEST_F(MqttBrokerTest, SecondConnectOnAConnectionIsAProtocolError) {
  make();
  auto c = conn("c1");
  Connect k;
  k.client_id = "c1";
  c->send(k);
  EXPECT_EQ(next<Disconnect>(*c).reason_code, reason::protocol_error);
  EXPECT_TRUE(c->link->closed);
}

TEST_F(MqttBrokerTest, WrongProtocolNameClosesWithoutConnack) {
  make();
  TC c(*broker_, loop_, v311);
  // CONNECT with protocol name "hj".
  c.raw(
      std::string("\x10\x0e\x00\x02hj\x04\x02\x00\x00\x00\x04"
                  "abcd",
                  16));
  drain();
  EXPECT_TRUE(c.link->closed);
}

// --- QoS flows ---

TEST_F(MqttBrokerTest, Qos012RoundTrip) {
  for (Version v : {v311, v5}) {
    make();
    auto c = conn("myclientid", v);
    EXPECT_EQ(sub(*c, "TopicA", 2).reason_codes, std::vector<uint8_t>{2});
    pub(*c, "TopicA", "qos 0", 0);
    pub(*c, "TopicA", "qos 1", 1);
    pub(*c, "TopicA", "qos 2", 2);
    std::vector<std::string> got;
    for (int i = 0; i < 3; ++i) {
      auto p = recv(*c);
      EXPECT_EQ(p.topic, "TopicA");
      EXPECT_EQ(p.qos, i);
      got.push_back(p.payload);
    }
    EXPECT_EQ(got, (std::vector<std::string>{"qos 0", "qos 1", "qos 2"}));
    EXPECT_TRUE(quiet(*c));
    broker_->stop();
  }
}

TEST_F(MqttBrokerTest, Qos2RetransmissionIsRoutedOnce) {
  make();
  auto c = conn("a");
  sub(*c, "t", 2);
  Publish p;
  p.topic = "t";
  p.payload = "x";
  p.qos = 2;
  p.packet_id = 9;
  c->send(p);
  EXPECT_EQ(ack(*c, PacketType::pubrec).packet_id, 9);
  p.dup = true;
  c->send(p);
  EXPECT_EQ(ack(*c, PacketType::pubrec).packet_id, 9);
  c->ack(PacketType::pubrel, 9);
  EXPECT_EQ(ack(*c, PacketType::pubcomp).packet_id, 9);
  recv(*c);
  EXPECT_TRUE(quiet(*c));
}

// --- retained messages ---

TEST_F(MqttBrokerTest, RetainedSetReplaceClear) {
  make();
  auto c = conn("a", v311);
  Properties none;
  pub(*c, "TopicA/B", "qos 0", 0, true);
  pub(*c, "Topic/C", "qos 1", 1, true);
  pub(*c, "TopicA/C", "qos 2", 2, true);
  pub(*c, "TopicA/C", "qos 2 again", 2, true);  // replaces
  sub(*c, "+/+", 2);
  std::map<std::string, std::pair<std::string, uint8_t>> got;
  for (int i = 0; i < 3; ++i) {
    auto p = recv(*c);
    EXPECT_TRUE(p.retain);
    got[p.topic] = {p.payload, p.qos};
  }
  EXPECT_EQ(got["TopicA/C"], std::make_pair(std::string("qos 2 again"), uint8_t{2}));
  EXPECT_EQ(got["TopicA/B"].second, 0);
  EXPECT_TRUE(quiet(*c));
  // A live delivery of a retained publish has RETAIN 0 (no retain-as-published).
  pub(*c, "TopicA/B", "live", 0, true);
  EXPECT_FALSE(recv(*c).retain);
  // Cleared with empty payloads.
  for (const char* t : {"TopicA/B", "Topic/C", "TopicA/C"}) pub(*c, t, "", 1, true);
  for (int i = 0; i < 3; ++i) recv(*c);  // the live deliveries of the clears
  auto d = conn("b", v311);
  sub(*d, "+/+", 2);
  EXPECT_TRUE(quiet(*d));
}

TEST_F(MqttBrokerTest, RetainHandlingAndRetainAsPublished) {
  make();
  auto c = conn("a");
  Properties up;
  up.user_properties = {{"a", "2"}, {"c", "3"}};
  pub(*c, "r/1", "one", 1, true, up);
  // retain handling 1: only for a new subscription.
  auto rh = [](uint8_t h) { return [h](SubscriptionOptions& o) { o.retain_handling = h; }; };
  sub(*c, "r/+", 1, 0, rh(1));
  auto p = recv(*c);
  EXPECT_EQ(p.payload, "one");
  EXPECT_EQ(p.properties.user_properties, up.user_properties);
  sub(*c, "r/+", 1, 0, rh(1));
  EXPECT_TRUE(quiet(*c));
  // 2: never.
  sub(*c, "r/#", 1, 0, rh(2));
  EXPECT_TRUE(quiet(*c));
  // 0: every time.
  sub(*c, "+/1", 1, 0, rh(0));
  recv(*c);
  sub(*c, "+/1", 1, 0, rh(0));
  recv(*c);
  EXPECT_TRUE(quiet(*c));

  auto d = conn("b");
  sub(*d, "rap", 1, 0, [](SubscriptionOptions& o) { o.retain_as_published = true; });
  pub(*c, "rap", "not retained", 1, false);
  pub(*c, "rap", "retained", 1, true);
  EXPECT_FALSE(recv(*d).retain);
  EXPECT_TRUE(recv(*d).retain);
}

// --- wills ---

TEST_F(MqttBrokerTest, WillOnAbnormalCloseOnlyAndOnDisconnect04) {
  make();
  auto watcher = conn("w");
  sub(*watcher, "will/#", 2);
  auto with_will = [](const std::string& t) {
    return [t](Connect& k) {
      Will w;
      w.topic = t;
      w.payload = "gone";
      w.qos = 1;
      w.properties.user_properties = {{"a", "2"}};
      k.will = w;
      k.keep_alive = 2;
    };
  };
  auto a = conn("a", v311, with_will("will/a"));
  a->drop();
  auto p = recv(*watcher);
  EXPECT_EQ(p.topic, "will/a");
  EXPECT_EQ(p.payload, "gone");

  auto b = conn("b", v5, with_will("will/b"));
  b->send(Disconnect{});
  EXPECT_TRUE(b->link->closed);
  b->drop();
  EXPECT_TRUE(quiet(*watcher, 200ms));

  auto c = conn("c", v5, with_will("will/c"));
  Disconnect d;
  d.reason_code = reason::disconnect_with_will_message;
  c->send(d);
  p = recv(*watcher);
  EXPECT_EQ(p.topic, "will/c");
  EXPECT_EQ(p.properties.user_properties,
            (std::vector<std::pair<std::string, std::string>>{{"a", "2"}}));

  // A malformed packet is an abnormal end: the will goes.
  auto e = conn("e", v5, with_will("will/e"));
  e->raw(std::string("\x30\x02\x00", 3) + std::string("\xff", 1));  // topic length past the end
  EXPECT_EQ(next<Disconnect>(*e).reason_code, reason::malformed_packet);
  EXPECT_EQ(recv(*watcher).topic, "will/e");
}

TEST_F(MqttBrokerTest, WillDelayAndSessionExpiry) {
  make();
  auto watcher = conn("w");
  sub(*watcher, "will", 2);
  auto with = [](uint32_t delay, uint32_t expiry) {
    return [delay, expiry](Connect& k) {
      Will w;
      w.topic = "will";
      w.payload = "late";
      w.properties.will_delay_interval = delay;
      k.will = w;
      k.properties.session_expiry_interval = expiry;
    };
  };
  // Delay 1 s within a 10 s session: after about a second.
  auto a = conn("a", v5, with(1, 10));
  auto t0 = std::chrono::steady_clock::now();
  a->drop();
  EXPECT_TRUE(quiet(*watcher, 500ms));
  recv(*watcher);
  auto dt = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(dt, 900ms);
  EXPECT_LT(dt, 2000ms);

  // Session expiry 0 ends the session at once, and the will with it.
  auto b = conn("b", v5, with(5, 0));
  b->drop();
  EXPECT_EQ(recv(*watcher).payload, "late");

  // Reconnecting within the delay cancels the will.
  auto c = conn("c", v5, with(1, 10));
  c->drop();
  Connack ca;
  auto c2 = conn(
      "c", v5, [](Connect& k) { k.clean_start = false; }, 0, &ca);
  EXPECT_TRUE(ca.session_present);
  EXPECT_TRUE(quiet(*watcher, 1500ms));
}

// --- sessions ---

TEST_F(MqttBrokerTest, SessionPresentAndOfflineQueue311) {
  make();
  auto persistent = [](Connect& k) { k.clean_start = false; };
  Connack ca;
  auto a = conn("myclientid", v311, persistent, 0, &ca);
  EXPECT_FALSE(ca.session_present);
  sub(*a, "+/+", 2);
  a->send(Disconnect{});
  a->drop();

  auto b = conn("myclientid2", v311);
  pub(*b, "TopicA/B", "qos 0", 0);
  pub(*b, "Topic/C", "qos 1", 1);
  pub(*b, "TopicA/C", "qos 2", 2);

  a = conn("myclientid", v311, persistent, 0, &ca);
  EXPECT_TRUE(ca.session_present);
  EXPECT_EQ(recv(*a).payload, "qos 1");  // QoS 0 is not queued for an offline session
  EXPECT_EQ(recv(*a).payload, "qos 2");
  EXPECT_TRUE(quiet(*a));
}

TEST_F(MqttBrokerTest, RedeliveryOnReconnect) {
  make();
  auto persistent = [](Connect& k) {
    k.clean_start = false;
    k.properties.session_expiry_interval = 99999;
  };
  auto b = conn("myclientid2", v5, persistent);
  sub(*b, "TopicA/#", 2);
  pub(*b, "TopicA/B", "", 1);
  pub(*b, "TopicA/C", "", 2);
  auto p1 = recv(*b, false);
  auto p2 = recv(*b, false);
  EXPECT_FALSE(p1.dup);
  b->send(Disconnect{});
  b->drop();
  Connack ca;
  b = conn("myclientid2", v5, persistent, 0, &ca);
  EXPECT_TRUE(ca.session_present);
  auto r1 = recv(*b);
  auto r2 = recv(*b);
  EXPECT_TRUE(r1.dup);
  EXPECT_EQ(r1.packet_id, p1.packet_id);
  EXPECT_EQ(r2.packet_id, p2.packet_id);
  EXPECT_EQ(r2.qos, 2);
  EXPECT_TRUE(quiet(*b));
}

// A persistent SessionStore: a second broker on the same store (a restarted node) resumes the
// session with its subscriptions; a clean start erases it; another user cannot take it.
TEST_F(MqttBrokerTest, SessionsOutliveTheBrokerInTheStore) {
  auto o = test_options();
  o.session_store = store_.get();
  make(o);
  {
    auto a = conn("keep", v5, [](Connect& k) { k.properties.session_expiry_interval = 600; });
    EXPECT_EQ(sub(*a, "news/+", 1, 9).reason_codes, std::vector<uint8_t>{1});
    auto b = conn("gone", v5, [](Connect& k) { k.properties.session_expiry_interval = 600; });
    sub(*b, "news/+", 1);
    auto c = conn("clean", v311);
    sub(*c, "news/+", 1);
    a->drop();
    b->drop();
    c->drop();
    drain(100ms);
  }
  broker_->stop();  // writes what is pending
  drain();
  broker_.reset();
  make(o);  // the node again
  Connack ack;
  auto a = conn(
      "keep", v5,
      [](Connect& k) {
        k.clean_start = false;
        k.properties.session_expiry_interval = 600;
      },
      0, &ack);
  EXPECT_TRUE(ack.session_present);
  Connack clean_ack;
  auto c = conn(
      "clean", v311, [](Connect& k) { k.clean_start = false; }, 0, &clean_ack);
  EXPECT_FALSE(clean_ack.session_present) << "a clean session is not kept";
  // "gone" starts clean: its stored session is erased, not resumed later.
  conn("gone", v5)->drop();
  auto p = conn("pub", v5);
  Publish m;
  m.topic = "news/today";
  m.payload = "extra";
  m.qos = 1;
  m.packet_id = 1;
  p->send(m);
  auto got = recv(*a);
  EXPECT_EQ(got.payload, "extra");
  EXPECT_EQ(got.properties.subscription_identifiers, std::vector<uint32_t>{9});
  EXPECT_TRUE(quiet(*c));
  drain(100ms);
  broker_->stop();
  drain();
  broker_.reset();
  make(o);
  Connack gone_ack;
  conn(
      "gone", v5,
      [](Connect& k) {
        k.clean_start = false;
        k.properties.session_expiry_interval = 600;
      },
      0, &gone_ack);
  EXPECT_FALSE(gone_ack.session_present);
}

TEST_F(MqttBrokerTest, SessionExpiry) {
  make();
  auto with = [](bool clean, std::optional<uint32_t> e) {
    return [clean, e](Connect& k) {
      k.clean_start = clean;
      k.properties.session_expiry_interval = e;
    };
  };
  Connack ca;
  auto a = conn("a", v5, with(true, 0));
  sub(*a, "x", 1);
  a->send(Disconnect{});
  a = conn("a", v5, with(false, 0), 0, &ca);
  EXPECT_FALSE(ca.session_present);  // 0: ended with the connection
  a->send(Disconnect{});

  a = conn("a", v5, with(true, 1));
  sub(*a, "x", 1);
  a->send(Disconnect{});
  a = conn("a", v5, with(false, 1), 0, &ca);
  EXPECT_TRUE(ca.session_present);
  a->send(Disconnect{});
  std::this_thread::sleep_for(1300ms);
  a = conn("a", v5, with(false, 1), 0, &ca);
  EXPECT_FALSE(ca.session_present);

  // DISCONNECT changes it; from 0 on CONNECT it may not (protocol error).
  Disconnect d;
  d.properties.session_expiry_interval = 0;
  a->send(d);
  a = conn("a", v5, with(false, 0), 0, &ca);
  EXPECT_FALSE(ca.session_present);
  d.properties.session_expiry_interval = 10;
  a->send(d);
  EXPECT_EQ(next<Disconnect>(*a).reason_code, reason::protocol_error);
}

TEST_F(MqttBrokerTest, MessageExpiry) {
  make();
  auto b = conn("b", v5, [](Connect& k) { k.properties.session_expiry_interval = 100; });
  sub(*b, "t", 2);
  b->send(Disconnect{});
  auto a = conn("a");
  Properties short_lived, long_lived;
  short_lived.message_expiry_interval = 1;
  long_lived.message_expiry_interval = 6;
  pub(*a, "t", "expire", 1, false, short_lived);
  pub(*a, "t", "expire", 2, false, short_lived);
  pub(*a, "t", "keep", 1, false, long_lived);
  pub(*a, "t", "keep", 2, false, long_lived);
  std::this_thread::sleep_for(1200ms);
  b = conn("b", v5, [](Connect& k) { k.clean_start = false; });
  for (int i = 0; i < 2; ++i) {
    auto p = recv(*b);
    EXPECT_EQ(p.payload, "keep");
    ASSERT_TRUE(p.properties.message_expiry_interval.has_value());
    EXPECT_LT(*p.properties.message_expiry_interval, 6u);
  }
  EXPECT_TRUE(quiet(*b));
}

TEST_F(MqttBrokerTest, TakeoverClosesTheOldConnection) {
  make();
  auto a = conn("same", v5, [](Connect& k) { k.properties.session_expiry_interval = 60; });
  sub(*a, "t", 1);
  Connack ca;
  auto b = conn(
      "same", v5, [](Connect& k) { k.clean_start = false; }, 0, &ca);
  EXPECT_TRUE(ca.session_present);
  EXPECT_EQ(next<Disconnect>(*a).reason_code, reason::session_taken_over);
  EXPECT_TRUE(a->link->closed);
  a->drop();  // the transport reports the close: changes nothing
  auto c = conn("other");
  pub(*c, "t", "to the new one", 1);
  EXPECT_EQ(recv(*b).payload, "to the new one");
  EXPECT_TRUE(quiet(*a));
}

// --- MQTT 5 features ---

TEST_F(MqttBrokerTest, ClientTopicAliases) {
  make();
  auto a = conn("a");
  sub(*a, "TopicA", 1);
  Properties al;
  al.topic_alias = 1;
  pub(*a, "TopicA", "alias set", 1, false, al);
  EXPECT_EQ(recv(*a).topic, "TopicA");
  Publish p;
  p.topic = "";
  p.qos = 1;
  p.packet_id = 77;
  p.payload = "alias used";
  p.properties.topic_alias = 1;
  a->send(p);
  EXPECT_EQ(ack(*a, PacketType::puback).packet_id, 77);
  auto r = recv(*a);
  EXPECT_EQ(r.topic, "TopicA");
  EXPECT_EQ(r.payload, "alias used");
  // Aliases are per connection.
  a->send(Disconnect{});
  a = conn("a", v5, [](Connect& k) { k.clean_start = false; });
  a->send(p);
  EXPECT_EQ(next<Disconnect>(*a).reason_code, reason::topic_alias_invalid);
  // Alias 0 (the codec refuses it) and an alias above the maximum.
  auto b = conn("b");
  Publish z;
  z.topic = "x";
  z.properties.topic_alias = 0;
  b->send(z);
  EXPECT_EQ(next<Disconnect>(*b).reason_code, reason::topic_alias_invalid);
  auto c = conn("c");
  z.properties.topic_alias = 65;
  c->send(z);
  EXPECT_EQ(next<Disconnect>(*c).reason_code, reason::topic_alias_invalid);
}

TEST_F(MqttBrokerTest, ServerTopicAliases) {
  make();
  auto a = conn("a", v5, [](Connect& k) { k.properties.topic_alias_maximum = 1; });
  sub(*a, "TopicA", 2);
  sub(*a, "TopicB", 2);
  for (uint8_t q = 0; q < 3; ++q) pub(*a, "TopicA", "x", q);
  auto p0 = recv(*a);
  EXPECT_EQ(p0.topic, "TopicA");
  ASSERT_TRUE(p0.properties.topic_alias.has_value());
  uint16_t alias = *p0.properties.topic_alias;
  for (int i = 0; i < 2; ++i) {
    auto p = recv(*a);
    EXPECT_EQ(p.topic, "");
    EXPECT_EQ(p.properties.topic_alias, alias);
  }
  pub(*a, "TopicB", "y", 0);  // no alias left
  auto pb = recv(*a);
  EXPECT_EQ(pb.topic, "TopicB");
  EXPECT_FALSE(pb.properties.topic_alias.has_value());

  auto b = conn("b");  // Topic Alias Maximum absent: 0
  sub(*b, "TopicA", 2);
  pub(*b, "TopicA", "x", 1);
  EXPECT_FALSE(recv(*b).properties.topic_alias.has_value());
}

TEST_F(MqttBrokerTest, ReceiveMaximumTowardsTheClient) {
  make();
  auto a = conn("a", v5, [](Connect& k) { k.properties.receive_maximum = 2; });
  sub(*a, "t", 2);
  for (int i = 1; i <= 3; ++i) pub(*a, "t", "m" + std::to_string(i), 1);
  auto p1 = recv(*a, false);
  auto p2 = recv(*a, false);
  EXPECT_TRUE(quiet(*a));  // the third waits for an ack
  a->ack(PacketType::puback, p1.packet_id);
  auto p3 = recv(*a);
  EXPECT_EQ(p3.payload, "m3");
  a->ack(PacketType::puback, p2.packet_id);
  EXPECT_TRUE(quiet(*a));
}

TEST_F(MqttBrokerTest, ReceiveMaximumExceededByTheClient) {
  auto o = test_options();
  o.receive_maximum = 3;
  make(o);
  Connack ca;
  auto a = conn("a", v5, {}, 0, &ca);
  EXPECT_EQ(ca.properties.receive_maximum, 3);
  for (uint16_t i = 1; i <= 4; ++i) {
    Publish p;
    p.topic = "t";
    p.qos = 2;
    p.packet_id = i;
    a->send(p);
  }
  EXPECT_EQ(next<Disconnect>(*a).reason_code, reason::receive_maximum_exceeded);
  EXPECT_TRUE(a->link->closed);
}

TEST_F(MqttBrokerTest, OverlappingSubscriptionsAndIdentifiers) {
  make();
  auto a = conn("a");
  Subscribe s;
  s.packet_id = 1;
  s.subscriptions = {{"TopicA/#", {2}}, {"TopicA/+", {1}}};
  a->send(s);
  EXPECT_EQ(next<Suback>(*a).reason_codes, (std::vector<uint8_t>{2, 1}));
  pub(*a, "TopicA/C", "overlapping", 2);
  auto p = recv(*a);
  EXPECT_EQ(p.qos, 2);
  EXPECT_TRUE(p.properties.subscription_identifiers.empty());
  EXPECT_TRUE(quiet(*a));

  auto b = conn("b");
  sub(*b, "TopicA", 2, 2);
  sub(*b, "TopicA/#", 2, 3);
  auto c = conn("c");
  sub(*c, "TopicA", 2, 456789);
  pub(*b, "TopicA", "ids", 1);
  auto pb = recv(*b);
  std::sort(pb.properties.subscription_identifiers.begin(),
            pb.properties.subscription_identifiers.end());
  EXPECT_EQ(pb.properties.subscription_identifiers, (std::vector<uint32_t>{2, 3}));
  EXPECT_EQ(recv(*c).properties.subscription_identifiers, std::vector<uint32_t>{456789});
  EXPECT_TRUE(quiet(*b));
}

TEST_F(MqttBrokerTest, NoLocalAndRequestResponse) {
  make();
  auto a = conn("a");
  auto b = conn("b");
  auto nl = [](SubscriptionOptions& o) { o.no_local = true; };
  sub(*a, "req", 2, 0, nl);
  sub(*b, "req", 2, 0, nl);
  Properties rp;
  rp.response_topic = "req";
  rp.correlation_data = "334";
  rp.content_type = "text/plain";
  rp.payload_format_indicator = 1;
  pub(*a, "req", "request", 1, false, rp);
  auto p = recv(*b);
  EXPECT_EQ(p.properties.response_topic, "req");
  EXPECT_EQ(p.properties.correlation_data, "334");
  EXPECT_EQ(p.properties.content_type, "text/plain");
  EXPECT_EQ(p.properties.payload_format_indicator, 1);
  EXPECT_TRUE(quiet(*a));
  pub(*b, *p.properties.response_topic, "response", 1, false, p.properties);
  EXPECT_EQ(recv(*a).payload, "response");
  EXPECT_TRUE(quiet(*b));

  Connack ca;
  auto c = conn(
      "c", v5, [](Connect& k) { k.properties.request_response_information = true; }, 0, &ca);
  EXPECT_TRUE(ca.properties.response_information.has_value());
}

// Connections are served by several threads: a SUBSCRIBE that reached the node before another
// client's PUBLISH may be handled after it. The subscription then gets what arrived after its
// SUBSCRIBE, as a one-thread broker handling them in arrival order would have sent it (the Paho
// suite's test_subscribe_options subscribes and publishes from another client at once).
TEST_F(MqttBrokerTest, SubscribeHandledLateGetsWhatArrivedAfterIt) {
  make();
  auto a = conn("a");
  auto b = conn("b");
  const int64_t t = arrival_now();
  // b's SUBSCRIBE arrived at t, a's PUBLISHes at t + 1 and t + 2 µs: handled in the other order.
  a->at = t + 1000;
  pub(*a, "late/x", "first", 1);
  a->at = t + 2000;
  pub(*a, "late/x", "second", 2);
  pub(*a, "elsewhere/x", "not matched", 1);
  b->at = t;
  EXPECT_EQ(sub(*b, "late/+", 1, 7).reason_codes, std::vector<uint8_t>{1});
  auto p1 = recv(*b);
  auto p2 = recv(*b);
  EXPECT_EQ(p1.payload, "first");
  EXPECT_EQ(p2.payload, "second");
  EXPECT_EQ(p2.qos, 1);  // min(published 2, subscribed 1), as routing gives
  EXPECT_FALSE(p1.retain);
  EXPECT_EQ(p1.properties.subscription_identifiers, std::vector<uint32_t>{7});
  EXPECT_TRUE(quiet(*b));
  // The same filter subscribed again (a replacement) gets nothing again.
  EXPECT_EQ(sub(*b, "late/+", 1).reason_codes, std::vector<uint8_t>{1});
  EXPECT_TRUE(quiet(*b));

  // What arrived before the SUBSCRIBE is not sent, even when handled just before it.
  auto c = conn("c");
  c->at = t + 1500;
  sub(*c, "late/x", 1);
  auto p = recv(*c);  // "second" (t + 2000) only
  EXPECT_EQ(p.payload, "second");
  EXPECT_TRUE(quiet(*c));
}

TEST_F(MqttBrokerTest, SubscribeHandledLateKeepsNoLocalRetainAndOneCopy) {
  make();
  auto a = conn("a");
  auto b = conn("b");
  const int64_t t = arrival_now();
  sub(*b, "one/#", 1);  // b already gets one/... : a late "one/x" adds no second copy
  a->at = t + 1000;
  pub(*a, "one/x", "once", 1);
  pub(*a, "ret/x", "retained after", 1, true);
  EXPECT_EQ(recv(*b).payload, "once");
  b->at = t;
  sub(*b, "one/x", 1);
  EXPECT_TRUE(quiet(*b));
  // A retained message that arrived after the SUBSCRIBE comes as published (retain 0 without
  // retain as published), once: not also as the retained message.
  sub(*b, "ret/x", 1);
  auto r = recv(*b);
  EXPECT_EQ(r.payload, "retained after");
  EXPECT_FALSE(r.retain);
  EXPECT_TRUE(quiet(*b));
  auto c = conn("c");
  c->at = t;
  sub(*c, "ret/x", 1, 0, [](SubscriptionOptions& o) { o.retain_as_published = true; });
  r = recv(*c);
  EXPECT_TRUE(r.retain);
  EXPECT_TRUE(quiet(*c));
  // No local: a's own messages, subscribed to late, are not sent to it.
  a->at = t;
  sub(*a, "one/x", 1, 0, [](SubscriptionOptions& o) { o.no_local = true; });
  EXPECT_TRUE(quiet(*a));
  // A shared subscription: its members got or will get the messages round robin, not replayed.
  auto d = conn("d");
  d->at = t;
  sub(*d, "$share/g/one/x", 1);
  EXPECT_TRUE(quiet(*d));
  // A SUBSCRIBE handled long after it arrived gets only what was routed in the last 250 ms
  // ("once" was routed more than 250 ms ago: the quiet() checks above).
  a->at = 0;
  pub(*a, "one/x", "fresh", 1);
  auto e = conn("e");
  e->at = t - 1'000'000'000;
  sub(*e, "one/x", 1);
  EXPECT_EQ(recv(*e).payload, "fresh");
  EXPECT_TRUE(quiet(*e));
  std::this_thread::sleep_for(300ms);
  auto f = conn("f");
  f->at = t - 1'000'000'000;
  sub(*f, "one/x", 1);
  EXPECT_TRUE(quiet(*f));
}

TEST_F(MqttBrokerTest, SharedSubscriptionOneMemberPerMessage) {
  make();
  auto a = conn("a");
  auto b = conn("b");
  for (TC* c : {a.get(), b.get()}) {
    Subscribe s;
    s.packet_id = 1;
    s.subscriptions = {{"$share/g/client_test5/x", {2}}, {"client_test5/TopicA", {2}}};
    c->send(s);
    EXPECT_EQ(next<Suback>(*c).reason_codes, (std::vector<uint8_t>{2, 2}));
  }
  pub(*b, "client_test5/TopicA", "both", 0);
  EXPECT_EQ(recv(*a).payload, "both");
  EXPECT_EQ(recv(*b).payload, "both");
  for (int i = 0; i < 4; ++i) pub(*b, "client_test5/x", "one of", 0);
  drain();
  a->poll();
  b->poll();
  EXPECT_EQ(a->got.size(), 2u);  // round robin
  EXPECT_EQ(b->got.size(), 2u);
  // Malformed share names; no local on a shared subscription is a protocol error.
  EXPECT_EQ(sub(*a, "$share/g", 0).reason_codes,
            std::vector<uint8_t>{reason::topic_filter_invalid});
  Subscribe s;
  s.packet_id = 9;
  s.subscriptions = {{"$share/g/y", {0, true}}};
  a->send(s);
  EXPECT_EQ(next<Disconnect>(*a).reason_code, reason::protocol_error);
}

TEST_F(MqttBrokerTest, MaximumPacketSizeTowardsTheClient) {
  make();
  auto a = conn("a", v5, [](Connect& k) { k.properties.maximum_packet_size = 64; });
  sub(*a, "TopicA", 2);
  pub(*a, "TopicA", std::string(32, '.'), 0);
  EXPECT_EQ(recv(*a).payload.size(), 32u);
  pub(*a, "TopicA", std::string(64, '.'), 1);
  EXPECT_TRUE(quiet(*a));
  pub(*a, "TopicA", "small again", 1);  // the dropped one holds no inflight slot
  EXPECT_EQ(recv(*a).payload, "small again");
}

TEST_F(MqttBrokerTest, OversizePacketFromTheClient) {
  auto o = test_options();
  o.max_packet_bytes = 100;
  make(o);
  Connack ca;
  auto a = conn("a", v5, {}, 0, &ca);
  EXPECT_EQ(ca.properties.maximum_packet_size, 100u);
  auto b = conn("b");
  sub(*b, "t", 0);
  pub(*a, "t", std::string(200, 'x'), 0);
  EXPECT_EQ(next<Disconnect>(*a).reason_code, reason::packet_too_large);
  pub(*a, "t", "ignored", 0);
  pub(*b, "t", "fine", 0);
  EXPECT_EQ(recv(*b).payload, "fine");
  EXPECT_TRUE(quiet(*b));
}

TEST_F(MqttBrokerTest, PayloadFormatInvalid) {
  make();
  auto a = conn("a");
  Properties pf;
  pf.payload_format_indicator = 1;
  EXPECT_EQ(pub(*a, "t", "\xff\xfe", 1, false, pf), reason::payload_format_invalid);
  EXPECT_EQ(pub(*a, "t", "ok", 1, false, pf), reason::no_matching_subscribers);
}

// --- access control ---

TEST_F(MqttBrokerTest, SubscribeFailure) {
  make();
  auto a = conn("a", v311);
  EXPECT_EQ(sub(*a, "test/nosubscribe", 2).reason_codes, std::vector<uint8_t>{0x80});
  auto b = conn("b", v5);
  EXPECT_EQ(sub(*b, "test/nosubscribe", 2).reason_codes,
            std::vector<uint8_t>{reason::unspecified_error});  // what Paho expects, not 0x87
  EXPECT_EQ(sub(*b, "a/#/b", 2).reason_codes, std::vector<uint8_t>{reason::topic_filter_invalid});
  // "#" is allowed, but the denied topic's deliveries are refused one by one.
  sub(*b, "test/#", 1);
  pub(*a, "test/nosubscribe", "no", 1);
  pub(*a, "test/other", "yes", 1);
  EXPECT_EQ(recv(*b).payload, "yes");
  EXPECT_TRUE(quiet(*b));
  EXPECT_GE(metrics_.mqtt_refused_total.value(), 3u);
}

TEST_F(MqttBrokerTest, PublishRefusals) {
  make(test_options(), "topic readwrite open/#\ntopic read ro/#\ntopic read $SYS/#\n");
  auto w = conn("w", v5);
  sub(*w, "ro/#", 1);
  auto a5 = conn("a5", v5);
  auto a3 = conn("a3", v311);
  EXPECT_EQ(pub(*a5, "ro/x", "no", 1), reason::not_authorized);
  EXPECT_EQ(pub(*a5, "ro/x", "no", 2), reason::not_authorized);
  // A reason string only for a client that asked for problem information explicitly.
  auto a5x = conn("a5x", v5, [](Connect& k) { k.properties.request_problem_information = true; });
  Publish rp;
  rp.topic = "ro/x";
  rp.qos = 1;
  rp.packet_id = 5;
  a5x->send(rp);
  auto pa = ack(*a5x, PacketType::puback);
  EXPECT_EQ(pa.reason_code, reason::not_authorized);
  EXPECT_TRUE(pa.properties.reason_string.has_value());
  a5->send(rp);
  EXPECT_FALSE(ack(*a5, PacketType::puback).properties.reason_string.has_value());
  // 3.1.1: acknowledged as if accepted (so the client does not retry), dropped, counted.
  EXPECT_EQ(pub(*a3, "ro/x", "no", 1), 0);
  EXPECT_EQ(pub(*a3, "ro/x", "no", 2), 0);
  EXPECT_TRUE(quiet(*w));
  // `$` topics: never from clients; "#" does not match them.
  EXPECT_EQ(pub(*a5, "$SYS/broker/uptime", "no", 1), reason::not_authorized);
  EXPECT_EQ(pub(*a5, "open/x", "", 1), reason::no_matching_subscribers);
  // IM namespaces without a TopicNamespace: refused.
  EXPECT_EQ(sub(*a5, "user/alice/inbox/+", 1).reason_codes,
            std::vector<uint8_t>{reason::unspecified_error});
  EXPECT_EQ(pub(*a5, "user/alice/inbox/bob", "hi", 1), reason::not_authorized);
  EXPECT_EQ(sub(*a3, "group/1/inbox/#", 1).reason_codes, std::vector<uint8_t>{0x80});
}

TEST_F(MqttBrokerTest, DollarTopicsAreNotMatchedByWildcards) {
  auto o = test_options();
  o.sys_interval_ms = 50;
  make(o, std::string(kPahoAcl) + "topic read $SYS/#\n");
  std::this_thread::sleep_for(100ms);  // the timer's first publication
  auto a = conn("a");
  sub(*a, "#", 0);
  auto b = conn("b");
  sub(*b, "$SYS/broker/clients/connected", 0);
  // The retained value, and the live ones of the next intervals (in either order: the timer
  // publishes on its own thread).
  bool retained = false;
  Publish p;
  for (int i = 0; i < 6 && !(retained && p.payload == "2"); ++i) {
    p = recv(*b);
    EXPECT_EQ(p.topic, "$SYS/broker/clients/connected");
    retained = retained || p.retain;
  }
  EXPECT_TRUE(retained);
  EXPECT_EQ(p.payload, "2");
  drain(150ms);
  a->poll();
  for (auto& q : a->got) EXPECT_NE(std::get<Publish>(q).topic.front(), '$');
}

// --- robustness ---

TEST_F(MqttBrokerTest, MalformedPacketClosesOnlyThatClient) {
  make();
  auto good = conn("good");
  sub(*good, "t", 1);
  auto bad5 = conn("bad5");
  bad5->raw(std::string("\x82\x05\x00\x01\x00\x00\x00", 7));  // SUBSCRIBE without a filter
  EXPECT_GE(next<Disconnect>(*bad5).reason_code, 0x80);
  EXPECT_TRUE(bad5->link->closed);
  auto bad3 = conn("bad3", v311);
  bad3->raw(std::string("\xf0\x00", 2));  // reserved type 15 in 3.1.1
  drain();
  EXPECT_TRUE(bad3->link->closed);
  bad3->poll();
  EXPECT_TRUE(bad3->got.empty());  // 3.1.1: closed without a word
  auto other = conn("other", v311);
  pub(*other, "t", "still fine", 1);
  EXPECT_EQ(recv(*good).payload, "still fine");
  EXPECT_GE(metrics_.mqtt_malformed_total.value(), 2u);
}

TEST_F(MqttBrokerTest, SlowConsumerDropsQos0KeepsQos1) {
  auto o = test_options();
  o.max_queued_bytes = 1000;
  make(o);
  auto slow = conn("slow");
  sub(*slow, "t", 1);
  auto p = conn("p");
  slow->link->queued = 5000;
  pub(*p, "t", "qos0", 0);
  pub(*p, "t", "qos1 a", 1);
  pub(*p, "t", "qos1 b", 1);
  auto first = recv(*slow, false);  // one in flight even when slow
  EXPECT_EQ(first.payload, "qos1 a");
  EXPECT_TRUE(quiet(*slow));
  EXPECT_GE(metrics_.mqtt_dropped_total.value(), 1u);
  slow->link->queued = 0;
  slow->ack(PacketType::puback, first.packet_id);
  EXPECT_EQ(recv(*slow).payload, "qos1 b");
}

TEST_F(MqttBrokerTest, MetricsAreExported) {
  make();
  auto a = conn("a");
  pub(*a, "t", "x", 1);
  auto text = metrics_.render_prometheus();
  EXPECT_NE(text.find("converge_mqtt_connections 1"), std::string::npos);
  EXPECT_NE(text.find("converge_mqtt_packets_in_total{type=\"publish\"} 1"), std::string::npos);
  EXPECT_NE(text.find("converge_mqtt_packets_out_total{type=\"puback\"} 1"), std::string::npos);
  a->drop();
  EXPECT_NE(metrics_.render_prometheus().find("converge_mqtt_connections 0"), std::string::npos);
}

// --- the IM namespaces ---

class FakeIm final : public TopicNamespace {
 public:
  bool owns(std::string_view t) const override {
    return t.starts_with("user/") || t.starts_with("group/");
  }
  void attach(const ClientInfo& c, Subscriptions subs, Deliver d,
              std::function<void()> ready) override {
    attached.push_back(c.client_id);
    restored = std::move(subs);
    deliver = std::move(d);
    ready();
  }
  void detach(const ClientInfo& c) override { detached.push_back(c.client_id); }
  uint8_t subscribe(const ClientInfo& c, const std::string& f, uint8_t qos) override {
    return f.starts_with("user/" + *c.username + "/") ? qos : uint8_t{reason::not_authorized};
  }
  void unsubscribe(const ClientInfo&, const std::string&) override {}
  void publish(const ClientInfo&, Publish p, std::function<void(uint8_t)> done) override {
    published.push_back(p.topic);
    std::thread([done] { done(reason::success); }).detach();  // "stored" on another thread
  }
  std::vector<std::string> attached, detached, published;
  Subscriptions restored;
  Deliver deliver;
};

TEST_F(MqttBrokerTest, ImNamespaceHooks) {
  FakeIm im;
  make(test_options(), kPahoAcl, &im);
  ASSERT_TRUE(svc_->register_user("alice", "", "pw", false, false));
  auto a = conn("dev", v5, [](Connect& k) {
    k.username = "alice";
    k.password = "pw";
  });
  EXPECT_EQ(im.attached, std::vector<std::string>{"dev"});
  EXPECT_EQ(sub(*a, "user/alice/inbox/+", 1).reason_codes, std::vector<uint8_t>{1});
  EXPECT_EQ(sub(*a, "user/bob/inbox/+", 1).reason_codes,
            std::vector<uint8_t>{reason::not_authorized});
  EXPECT_EQ(pub(*a, "user/bob/inbox/alice", "hi", 1), reason::success);
  EXPECT_EQ(im.published, std::vector<std::string>{"user/bob/inbox/alice"});
  bool acked = false;
  Publish d;
  d.topic = "user/alice/inbox/bob";
  d.payload = "{}";
  d.qos = 1;
  im.deliver(d, [&] { acked = true; });
  auto p = recv(*a);
  EXPECT_EQ(p.topic, "user/alice/inbox/bob");
  drain();
  EXPECT_TRUE(acked);
  // Anonymous clients never reach the namespaces.
  auto anon = conn("anon");
  EXPECT_EQ(sub(*anon, "user/alice/inbox/+", 1).reason_codes,
            std::vector<uint8_t>{reason::unspecified_error});
  EXPECT_EQ(im.attached.size(), 1u);
  a->drop();
  EXPECT_EQ(im.detached, std::vector<std::string>{"dev"});
}

}  // namespace
}  // namespace converge::mqtt
