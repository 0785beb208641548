// The MQTT TCP transport against a stand-in Client (no broker): bytes in order both ways,
// gathered writes, close() flushing before FIN, the connect and keepalive deadlines, the
// slow-consumer backstop, on_closed exactly once, and shutdown.
#include "gateway/mqtt/tcp_listener.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "base/metrics.hpp"
#include "gateway/mqtt/broker.hpp"
#include "net/io_pool.hpp"

using namespace converge;
using namespace std::chrono_literals;

namespace {

// What the broker would be: each test says what to do with the bytes.
struct Fake final : mqtt::Client {
  std::shared_ptr<mqtt::Link> link;
  std::function<void(Fake&, std::string_view)> on_data;
  std::atomic<int>* closed;
  void on_bytes(std::string_view b, int64_t arrived_ns) override {
    arrivals.push_back(arrived_ns);
    if (on_data) on_data(*this, b);
  }
  std::vector<int64_t> arrivals;  // on the link's thread
  void on_closed() override {
    closed->fetch_add(1);
    link.reset();
  }
};

struct Harness {
  Metrics metrics;
  IoPool io{2};
  std::atomic<int> accepted{0};
  std::atomic<int> closed{0};
  std::function<void(Fake&, std::string_view)> on_data;
  std::mutex mu;
  std::string remote;     // the first link's remote_address()
  std::string transport;  // and transport()
  std::unique_ptr<mqtt::TcpListener> listener;

  explicit Harness(mqtt::TcpListenerOptions opts = {}) {
    listener = std::make_unique<mqtt::TcpListener>(
        opts,
        [this](std::shared_ptr<mqtt::Link> link) -> std::shared_ptr<mqtt::Client> {
          auto c = std::make_shared<Fake>();
          {
            std::lock_guard lk(mu);
            if (remote.empty()) {
              remote = link->remote_address();
              transport = link->transport();
            }
          }
          c->link = std::move(link);
          c->on_data = on_data;
          c->closed = &closed;
          accepted.fetch_add(1);
          return c;
        },
        io, metrics);
    EXPECT_TRUE(listener->listen("127.0.0.1", 0));
    io.start();
  }
  ~Harness() {
    listener->shutdown(1000);
    io.stop();
    io.join();
  }
  uint16_t port() const { return listener->port(); }

  // Waits for `n` on_closed calls (or the timeout).
  bool wait_closed(int n, std::chrono::milliseconds t = 3000ms) {
    auto end = std::chrono::steady_clock::now() + t;
    while (closed.load() < n && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(5ms);
    return closed.load() >= n;
  }
};

int dial(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    auto n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

struct ReadResult {
  std::string bytes;
  bool eof = false;  // the server closed (FIN or reset)
};

// Reads until `want` bytes, EOF or the timeout.
ReadResult read_for(int fd, std::chrono::milliseconds t, std::size_t want = SIZE_MAX) {
  ReadResult r;
  auto end = std::chrono::steady_clock::now() + t;
  char buf[65536];
  while (r.bytes.size() < want) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      r.eof = true;
      break;
    }
    r.bytes.append(buf, static_cast<std::size_t>(n));
  }
  return r;
}

TEST(MqttTcp, BytesGoToTheClientAndWritesComeBackInOrder) {
  Harness h;
  h.on_data = [](Fake& c, std::string_view b) {
    // Several writes in one handler leave gathered, in order.
    for (char ch : b) c.link->write(std::make_shared<const std::string>(std::string(3, ch)));
  };
  int fd = dial(h.port());
  ASSERT_GE(fd, 0);
  send_all(fd, "abc");
  auto r = read_for(fd, 2000ms, 9);
  EXPECT_EQ(r.bytes, "aaabbbccc");
  EXPECT_EQ(h.accepted.load(), 1);
  {
    std::lock_guard lk(h.mu);
    EXPECT_EQ(h.transport, "tcp");
    EXPECT_TRUE(h.remote.starts_with("127.0.0.1:")) << h.remote;
  }
  ::close(fd);
  EXPECT_TRUE(h.wait_closed(1));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(h.closed.load(), 1);  // exactly once
}

// Bytes come with the kernel's receive time (what the broker orders SUBSCRIBEs and PUBLISHes
// of different connections by), on the clock of mqtt::arrival_now(): after they were sent,
// not after they were handed over.
TEST(MqttTcp, BytesComeWithTheirArrivalTime) {
  Harness h;
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> got;  // (arrived, handed over)
  h.on_data = [&](Fake& c, std::string_view) {
    std::lock_guard lk(mu);
    got.emplace_back(c.arrivals.back(), mqtt::arrival_now());
    c.link->write(std::make_shared<const std::string>("k"));
  };
  int fd = dial(h.port());
  ASSERT_GE(fd, 0);
  const int64_t before = mqtt::arrival_now();
  send_all(fd, "x");
  EXPECT_EQ(read_for(fd, 2000ms, 1).bytes, "k");
  std::this_thread::sleep_for(20ms);
  const int64_t middle = mqtt::arrival_now();
  send_all(fd, "y");
  EXPECT_EQ(read_for(fd, 2000ms, 1).bytes, "k");
  {
    std::lock_guard lk(mu);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_GE(got[0].first, before);
    EXPECT_LE(got[0].first, got[0].second);
    EXPECT_LT(got[0].first, middle);
    EXPECT_GE(got[1].first, middle);
    EXPECT_LE(got[1].first, got[1].second);
  }
  ::close(fd);
  EXPECT_TRUE(h.wait_closed(1));
}

TEST(MqttTcp, CloseFlushesWhatIsQueuedThenSendsFin) {
  Harness h;
  const std::string big(3 << 20, 'x');  // more than one gathered write
  h.on_data = [&big](Fake& c, std::string_view) {
    c.link->write(std::make_shared<const std::string>(big));
    c.link->write(std::make_shared<const std::string>("end"));
    c.link->close();
    c.link->write(std::make_shared<const std::string>("after close"));  // dropped
  };
  int fd = dial(h.port());
  ASSERT_GE(fd, 0);
  send_all(fd, "go");
  auto r = read_for(fd, 5000ms);
  EXPECT_TRUE(r.eof);
  EXPECT_EQ(r.bytes.size(), big.size() + 3);
  EXPECT_TRUE(r.bytes.ends_with("end"));
  ::close(fd);
  EXPECT_TRUE(h.wait_closed(1));
}

TEST(MqttTcp, NoConnectInTimeClosesEvenWhenBytesTrickle) {
  mqtt::TcpListenerOptions o;
  o.connect_timeout = 300ms;
  Harness h(o);
  int fd = dial(h.port());
  ASSERT_GE(fd, 0);
  auto start = std::chrono::steady_clock::now();
  // A slowloris sends a byte now and then: the connect deadline does not move.
  bool eof = false;
  for (int i = 0; i < 40 && !eof; ++i) {
    send_all(fd, "\x10");
    eof = read_for(fd, 50ms).eof;
  }
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(eof);
  EXPECT_LT(took, 1500ms);
  EXPECT_GE(took, 250ms);
  ::close(fd);
  EXPECT_TRUE(h.wait_closed(1));
}

TEST(MqttTcp, KeepaliveDeadlineMovesWithEveryPacket) {
  mqtt::TcpListenerOptions o;
  o.connect_timeout = 200ms;
  Harness h(o);
  // "c" stands for CONNECT, "p" for a whole packet, "x" for a byte of one not yet whole.
  h.on_data = [](Fake& c, std::string_view b) {
    if (b.find('c') != std::string_view::npos) c.link->set_idle_timeout(400ms);
    if (b.find('p') != std::string_view::npos) c.link->alive();
  };
  int fd = dial(h.port());
  ASSERT_GE(fd, 0);
  send_all(fd, "c");
  // Past the connect deadline, kept alive by a packet every 150 ms.
  for (int i = 0; i < 6; ++i) {
    send_all(fd, "p");
    EXPECT_FALSE(read_for(fd, 150ms).eof) << "closed at round " << i;
  }
  // Then silence: closed after the idle timeout.
  auto start = std::chrono::steady_clock::now();
  auto r = read_for(fd, 3000ms);
  EXPECT_TRUE(r.eof);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  ::close(fd);
  EXPECT_TRUE(h.wait_closed(1));
  EXPECT_EQ(h.metrics.heartbeat_timeouts_total.value(), 1u);
}

TEST(MqttTcp, BytesThatMakeNoPacketDoNotKeepAlive) {
  mqtt::TcpListenerOptions o;
  o.connect_timeout = 200ms;
  Harness h(o);
  h.on_data = [](Fake& c, std::string_view b) {
    if (b.find('c') != std::string_view::npos) c.link->set_idle_timeout(400ms);
  };
  int fd = dial(h.port());
  ASSERT_GE(fd, 0);
  send_all(fd, "c");
  // A byte every 100 ms, never a whole packet: closed at the idle timeout all the same.
  auto start = std::chrono::steady_clock::now();
  bool eof = false;
  for (int i = 0; i < 20 && !eof; ++i) {
    send_all(fd, "x");
    eof = read_for(fd, 100ms).eof;
  }
  EXPECT_TRUE(eof);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1200ms);
  ::close(fd);
  EXPECT_TRUE(h.wait_closed(1));
}

TEST(MqttTcp, ZeroIdleTimeoutMeansNone) {
  mqtt::TcpListenerOptions o;
  o.connect_timeout = 200ms;
  Harness h(o);
  h.on_data = [](Fake& c, std::string_view) { c.link->set_idle_timeout(0ms); };
  int fd = dial(h.port());
  ASSERT_GE(fd, 0);
  send_all(fd, "c");
  EXPECT_FALSE(read_for(fd, 700ms).eof);
  ::close(fd);
  EXPECT_TRUE(h.wait_closed(1));
}

TEST(MqttTcp, AReaderThatReadsNothingIsCutAtTheQueueCap) {
  mqtt::TcpListenerOptions o;
  o.max_queued_bytes = 256 << 10;
  Harness h(o);
  h.on_data = [](Fake& c, std::string_view) {
    // Far more than the socket buffers hold: the queue passes the cap.
    auto chunk = std::make_shared<const std::string>(64 << 10, 'y');
    for (int i = 0; i < 512; ++i) c.link->write(chunk);
  };
  int fd = dial(h.port());
  ASSERT_GE(fd, 0);
  send_all(fd, "flood me");
  EXPECT_TRUE(h.wait_closed(1, 5000ms));
  EXPECT_GE(h.metrics.slow_consumer_closes_total.value(), 1u);
  ::close(fd);
}

TEST(MqttTcp, OneConnectionClosingLeavesTheOthers) {
  Harness h;
  h.on_data = [](Fake& c, std::string_view b) {
    if (b == "die") return c.link->close();
    c.link->write(std::make_shared<const std::string>(b));
  };
  int a = dial(h.port());
  int b = dial(h.port());
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  send_all(a, "die");
  EXPECT_TRUE(read_for(a, 2000ms).eof);
  send_all(b, "still here");
  EXPECT_EQ(read_for(b, 2000ms, 10).bytes, "still here");
  ::close(a);
  ::close(b);
  EXPECT_TRUE(h.wait_closed(2));
}

TEST(MqttTcp, ShutdownClosesOpenConnectionsAndStopsAccepting) {
  Harness h;
  int fd = dial(h.port());
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 100 && h.accepted.load() < 1; ++i) std::this_thread::sleep_for(5ms);
  // The peer hangs up when it sees the server's FIN, as MQTT clients do.
  std::atomic<bool> eof{false};
  std::thread peer([&] {
    eof = read_for(fd, 3000ms).eof;
    ::close(fd);
  });
  auto start = std::chrono::steady_clock::now();
  h.listener->shutdown(2000);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms);
  peer.join();
  EXPECT_TRUE(eof.load());
  EXPECT_TRUE(h.wait_closed(1));
  int late = dial(h.port());
  if (late >= 0) {
    EXPECT_TRUE(read_for(late, 500ms).eof);
    ::close(late);
  }
}

}  // namespace
