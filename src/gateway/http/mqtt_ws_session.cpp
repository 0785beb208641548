// MQTT over WebSocket at /mqtt (DESIGN.md section 3): the HTTP server's upgraded connection as an
// mqtt::Link (gateway/mqtt/broker.hpp). The framing is the project's own (gateway/ws/frame.hpp),
// as the chat WebSocket session's: binary messages only; each message's bytes go to the broker
// as they are (an MQTT packet may span messages, a message may carry several packets) and each
// Link::write leaves as one binary message.
#include <spdlog/spdlog.h>
#include <algorithm>
#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <deque>

#include "base/clock.hpp"
#include "base/metrics.hpp"
#include "gateway/http/context.hpp"
#include "gateway/mqtt/broker.hpp"
#include "gateway/ws/frame.hpp"

namespace converge {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

constexpr std::size_t kReadChunk = 16 << 10;
constexpr int kReadsPerWakeup = 4;
constexpr std::size_t kMaxFramesPerWrite = 64;
constexpr std::size_t kMaxBytesPerWrite = 256 << 10;
constexpr int64_t kCloseTimeoutMs = 5000;  // close handshake: the peer has this long to answer

std::string endpoint_string(const tcp::endpoint& ep) {
  auto a = ep.address();
  std::string s = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  return s + ":" + std::to_string(ep.port());
}

class MqttWsSession final : public mqtt::Link,
                            public std::enable_shared_from_this<MqttWsSession>,
                            private ws::FrameParser::Handler {
 public:
  MqttWsSession(HttpServer::Impl& ctx, tcp::socket socket)
      : ctx_(ctx),
        socket_(std::move(socket)),
        exec_(socket_.get_executor()),
        timer_(exec_),
        parser_(ctx.opts.mqtt_max_message_bytes) {}

  void run(const std::string& client_key, std::string early) {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    remote_ = ec ? std::string("?") : endpoint_string(ep);
    std::string res =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Server: converge\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Accept: " +
        ws::accept_key(client_key) + "\r\n\r\n";
    Out o;
    o.payload = std::make_shared<const std::string>(std::move(res));
    o.raw = true;
    queued_bytes_ += o.payload->size();
    queue_.push_back(std::move(o));
    do_write();

    std::weak_ptr<MqttWsSession> weak = weak_from_this();
    auto exec = exec_;
    ctx_.track(this, [weak, exec] {
      asio::post(exec, [weak] {
        if (auto s = weak.lock()) s->begin_close(ws::going_away, "node stopping");
      });
    });
    tracked_ = true;
    accepted_at_us_ = last_activity_us_ = mono_us();
    client_ = ctx_.opts.mqtt_accept(shared_from_this());
    if (!client_) {
      begin_close(ws::internal_error, "refused");
    } else if (!closing_) {
      arm_timer_for_state();
    }
    socket_.non_blocking(true, ec);
    if (!early.empty()) frame_bytes(early.data(), early.size());
    wait_readable();
  }

  // --- mqtt::Link ---
  void post(std::function<void()> fn) override { asio::post(exec_, std::move(fn)); }

  void write(std::shared_ptr<const std::string> bytes) override {
    if (closing_ || dead_ || !bytes || bytes->empty()) return;
    Out o;
    o.header_len = static_cast<uint8_t>(ws::encode_header(o.header, ws::binary, bytes->size()));
    queued_bytes_ += bytes->size() + o.header_len;
    o.payload = std::move(bytes);
    queue_.push_back(std::move(o));
    if (queued_bytes_ > ctx_.opts.mqtt_max_send_queue_bytes) {
      ctx_.metrics.slow_consumer_closes_total.add();
      asio::post(exec_, [self = shared_from_this()] { self->cut("slow consumer"); });
      return;
    }
    schedule_write();
  }

  // The MQTT bytes and frame headers queued; the close frame, pongs and the 101 count too.
  std::size_t queued_bytes() const override { return queued_bytes_; }

  // Flush, then the close handshake (1000).
  void close() override { begin_close(ws::normal, ""); }

  void set_idle_timeout(std::chrono::milliseconds t) override {
    connected_ = true;
    idle_us_ = std::max<int64_t>(0, t.count()) * 1000;
    last_activity_us_ = mono_us();
    if (closing_ || dead_) return;
    if (idle_us_ > 0)
      arm_timer_for_state();
    else
      timer_.cancel();
  }

  void alive() override { last_activity_us_ = mono_us(); }

  std::string remote_address() const override { return remote_; }
  const char* transport() const override { return "ws"; }

 private:
  // --- reading ---
  void wait_readable() {
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](error_code ec) { self->on_readable(ec); });
  }

  void on_readable(error_code ec) {
    if (ec || dead_) return finish();
    thread_local std::array<char, kReadChunk> buf;
    for (int i = 0; i < kReadsPerWakeup; ++i) {
      std::size_t n = socket_.read_some(asio::buffer(buf), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      if (ec) return finish();  // EOF included
      frame_bytes(buf.data(), n);
      if (dead_) return finish();
      if (n < buf.size()) break;
    }
    wait_readable();  // also while closing: the read side sees the peer's end and finishes
  }

  void frame_bytes(const char* data, std::size_t n) {
    if (n == 0 || peer_closed_) return;
    if (!carry_.empty()) {  // a frame header split across reads
      carry_.append(data, n);
      std::string all = std::move(carry_);
      carry_.clear();
      return frame_now(all.data(), all.size());
    }
    frame_now(data, n);
  }

  void frame_now(const char* data, std::size_t n) {
    const auto* p = reinterpret_cast<const uint8_t*>(data);
    std::size_t used = parser_.feed(p, n, *this);
    if (parser_.failed()) {
      if (parser_.failure_code() == ws::too_big) ctx_.metrics.errors_total.add();
      peer_closed_ = true;  // nothing more is read from a peer that broke the framing
      begin_close(parser_.failure_code(), parser_.failure_reason());
      return;
    }
    if (used < n) carry_.assign(data + used, n - used);
  }

  // --- FrameParser::Handler ---
  void on_message(ws::Opcode op, std::string_view payload) override {
    if (closing_ || dead_) return;
    if (op != ws::binary) {
      // MQTT-6.0.0-1: MQTT control packets travel in binary messages; anything else closes.
      peer_closed_ = true;
      return begin_close(ws::unsupported, "MQTT over WebSocket is binary");
    }
    if (client_) client_->on_bytes(payload, mqtt::arrival_now());
  }

  void on_ping(std::string_view payload) override {
    if (closing_ || dead_) return;
    enqueue_control(ws::pong, std::string(payload));
  }

  void on_close(uint16_t code, std::string_view) override {
    peer_closed_ = true;
    if (!closing_) begin_close(code, "");
  }

  // --- writing ---
  struct Out {
    std::shared_ptr<const std::string> payload;
    uint8_t header[10] = {};
    uint8_t header_len = 0;
    bool raw = false;  // the 101 response: no frame header
  };

  void enqueue_control(ws::Opcode op, std::string payload) {
    if (dead_) return;
    Out o;
    o.header_len = static_cast<uint8_t>(ws::encode_header(o.header, op, payload.size()));
    queued_bytes_ += payload.size() + o.header_len;
    o.payload = std::make_shared<const std::string>(std::move(payload));
    queue_.push_back(std::move(o));
    schedule_write();
  }

  void schedule_write() {
    if (writing_ || write_scheduled_) return;
    write_scheduled_ = true;
    asio::post(exec_, [self = shared_from_this()] {
      self->write_scheduled_ = false;
      if (!self->writing_) self->do_write();
    });
  }

  void do_write() {
    if (queue_.empty() || dead_) return;
    writing_ = true;
    bufs_.clear();
    in_flight_ = 0;
    std::size_t bytes = 0;
    for (auto& o : queue_) {
      if (in_flight_ >= kMaxFramesPerWrite || (bytes > 0 && bytes >= kMaxBytesPerWrite)) break;
      if (!o.raw) bufs_.emplace_back(o.header, o.header_len);
      bufs_.emplace_back(o.payload->data(), o.payload->size());
      bytes += o.header_len + o.payload->size();
      ++in_flight_;
    }
    asio::async_write(socket_, bufs_, [self = shared_from_this()](error_code ec, std::size_t) {
      self->on_write(ec);
    });
  }

  void on_write(error_code ec) {
    writing_ = false;
    if (ec || dead_) {
      dead_ = true;
      drop_queue();
      error_code ignored;
      socket_.close(ignored);  // the read side sees it and finishes
      return;
    }
    for (; in_flight_ > 0; --in_flight_) {
      queued_bytes_ -= queue_.front().header_len + queue_.front().payload->size();
      queue_.pop_front();
    }
    if (!queue_.empty()) return do_write();
    if (close_sent_) {
      // Our close frame is out: FIN, then wait for the peer's close (or EOF) on the read side.
      error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      if (peer_closed_) socket_.close(ignored);
    }
  }

  void drop_queue() {
    queue_.clear();
    bufs_.clear();
    in_flight_ = 0;
    queued_bytes_ = 0;
  }

  // What is queued goes out, then a close frame; no MQTT byte is read or written after.
  void begin_close(uint16_t code, const char* reason) {
    if (closing_ || dead_) return;
    closing_ = true;
    close_sent_ = true;
    close_deadline_us_ = mono_us() + kCloseTimeoutMs * 1000;
    arm_timer_for_state();
    enqueue_control(ws::close, ws::close_payload(code, reason));
  }

  // --- the one timer: connect deadline, keepalive deadline, close handshake deadline ---
  int64_t deadline_us() const {
    if (closing_) return close_deadline_us_;
    if (!connected_) return accepted_at_us_ + ctx_.opts.mqtt_connect_timeout_ms * 1000;
    if (idle_us_ > 0) return last_activity_us_ + idle_us_;
    return 0;
  }

  void arm_timer_for_state() {
    int64_t d = deadline_us();
    if (d == 0) return;
    int64_t left = std::max<int64_t>(0, d - mono_us());
    timer_.expires_after(std::chrono::microseconds(left) + std::chrono::milliseconds(1));
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->on_timer();
    });
  }

  void on_timer() {
    if (finished_ || dead_) return;
    int64_t d = deadline_us();
    if (d == 0) return;
    if (mono_us() < d) return arm_timer_for_state();
    if (closing_) return cut("close handshake timed out");
    if (!connected_) return begin_close(ws::policy, "no CONNECT in time");
    ctx_.metrics.heartbeat_timeouts_total.add();
    // MQTT-3.1.2-24: the network connection is closed, as if it had failed.
    cut("keepalive timeout");
  }

  void cut(const char* why) {
    if (dead_) return;
    spdlog::debug("mqtt ws {}: closed: {}", remote_, why);
    dead_ = true;
    timer_.cancel();
    error_code ignored;
    socket_.close(ignored);  // the pending read completes and finishes
    if (!writing_) drop_queue();
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    dead_ = true;
    timer_.cancel();
    error_code ignored;
    socket_.close(ignored);
    if (!writing_) drop_queue();
    if (tracked_) ctx_.untrack(this);
    tracked_ = false;
    if (auto c = std::move(client_)) c->on_closed();
  }

  HttpServer::Impl& ctx_;
  tcp::socket socket_;
  const tcp::socket::executor_type exec_;
  asio::steady_timer timer_;
  ws::FrameParser parser_;
  std::string carry_;  // an incomplete frame header
  std::shared_ptr<mqtt::Client> client_;
  std::string remote_;
  std::deque<Out> queue_;  // a deque: push_back keeps the addresses bufs_ points into
  std::vector<asio::const_buffer> bufs_;
  std::size_t in_flight_ = 0;
  std::size_t queued_bytes_ = 0;
  int64_t accepted_at_us_ = 0;
  int64_t last_activity_us_ = 0;
  int64_t idle_us_ = 0;
  int64_t close_deadline_us_ = 0;
  bool tracked_ = false;
  bool connected_ = false;
  bool writing_ = false;
  bool write_scheduled_ = false;
  bool closing_ = false;
  bool close_sent_ = false;
  bool peer_closed_ = false;
  bool dead_ = false;
  bool finished_ = false;
};

}  // namespace

void start_mqtt_ws_session(HttpServer::Impl& ctx, tcp::socket socket, const std::string& client_key,
                           std::string early) {
  std::make_shared<MqttWsSession>(ctx, std::move(socket))->run(client_key, std::move(early));
}

}  // namespace converge
