#include "client/ws_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <deque>
#include <random>

#include "base/crypto.hpp"
#include "gateway/ws/frame.hpp"

namespace converge::client {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

class WsClientImpl final : public WsClient,
                           public std::enable_shared_from_this<WsClientImpl>,
                           private ws::FrameParser::Handler {
 public:
  WsClientImpl(asio::io_context& io, Options o, Handlers h)
      : opts_(std::move(o)),
        h_(std::move(h)),
        socket_(io),
        parser_(opts_.max_message_bytes, ws::FrameParser::Side::client),
        rng_(std::random_device{}()) {}

  void connect() override {
    error_code ec;
    auto addr = asio::ip::make_address(opts_.host, ec);
    if (ec) return fail("bad host");
    tcp::endpoint ep(addr, opts_.port);
    socket_.open(ep.protocol(), ec);
    if (!ec && !opts_.local_address.empty()) {
      auto local = asio::ip::make_address(opts_.local_address, ec);
      if (!ec) socket_.bind(tcp::endpoint(local, 0), ec);
    }
    if (ec) return fail(ec.message());
    socket_.async_connect(ep, [self = shared_from_this()](error_code ec2) {
      if (ec2) return self->fail(ec2.message());
      error_code ignored;
      self->socket_.set_option(tcp::no_delay(true), ignored);
      self->handshake();
    });
  }

  void send_text(std::string_view p) override { send(ws::text, p); }
  void send_binary(std::string_view p) override { send(ws::binary, p); }

  void close(uint16_t code) override {
    if (closing_ || done_) return;
    closing_ = true;
    send(ws::close, ws::close_payload(code, ""), true);
  }

  std::size_t queued_bytes() const override { return queued_bytes_; }

 private:
  void handshake() {
    std::string key = random_hex(11);  // 22 base64-alphabet chars + "==": a 16-byte nonce shape
    std::string req =
        "GET " + opts_.path + " HTTP/1.1\r\nHost: " + opts_.host + ":" +
        std::to_string(opts_.port) +
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: " +
        key + "==\r\n";
    for (auto& [k, v] : opts_.headers) req += k + ": " + v + "\r\n";
    req += "\r\n";
    auto buf = std::make_shared<std::string>(std::move(req));
    asio::async_write(socket_, asio::buffer(*buf),
                      [self = shared_from_this(), buf](error_code ec, std::size_t) {
                        if (ec) return self->fail(ec.message());
                        asio::async_read_until(
                            self->socket_, self->hs_, "\r\n\r\n",
                            [self](error_code ec2, std::size_t n) { self->on_handshake(ec2, n); });
                      });
  }

  void on_handshake(error_code ec, std::size_t n) {
    if (ec) return fail(ec.message());
    std::string head(static_cast<const char*>(hs_.data().data()), n);
    if (head.rfind("HTTP/1.1 101", 0) != 0)
      return fail("handshake refused: " + head.substr(0, head.find('\r')));
    hs_.consume(n);
    // Bytes after the response are the first frames.
    rbuf_.resize(16 << 10);
    std::size_t extra = hs_.size();
    if (extra > rbuf_.size()) rbuf_.resize(extra);
    std::memcpy(rbuf_.data(), hs_.data().data(), extra);
    hs_.consume(extra);
    open_ = true;
    if (h_.on_open) h_.on_open();
    flush();
    consume(extra);
  }

  void do_read() {
    if (rlen_ == rbuf_.size()) rbuf_.resize(rbuf_.size() * 2);
    socket_.async_read_some(asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_),
                            [self = shared_from_this()](error_code ec, std::size_t n) {
                              if (ec) return self->fail(ec.message());
                              self->consume(n);
                            });
  }

  void consume(std::size_t n) {
    rlen_ += n;
    if (rlen_ > 0) {
      std::size_t used = parser_.feed(rbuf_.data(), rlen_, *this);
      if (parser_.failed()) return fail(parser_.failure_reason());
      std::memmove(rbuf_.data(), rbuf_.data() + used, rlen_ - used);
      rlen_ -= used;
    }
    if (!done_) do_read();
  }

  void on_message(ws::Opcode op, std::string_view p) override {
    if (op == ws::text && h_.on_text) h_.on_text(p);
    if (op == ws::binary && h_.on_binary) h_.on_binary(p);
  }
  void on_ping(std::string_view p) override { send(ws::pong, p, true); }
  void on_close(uint16_t code, std::string_view reason) override {
    if (!closing_) {
      closing_ = true;
      send(ws::close, ws::close_payload(code, ""), true);
    }
    finish(code, std::string(reason));
  }

  void send(ws::Opcode op, std::string_view p, bool control = false) {
    if (done_ || (closing_ && !control)) return;
    uint8_t mask[4];
    uint32_t r = rng_();
    std::memcpy(mask, &r, 4);
    out_.push_back(ws::encode_client_frame(op, p, mask));
    queued_bytes_ += out_.back().size();
    if (open_) flush();
  }

  void flush() {
    if (writing_ || out_.empty() || done_) return;
    writing_ = true;
    bufs_.clear();
    for (auto& o : out_) {
      bufs_.emplace_back(o.data(), o.size());
      ++in_flight_;
      if (in_flight_ >= 64) break;
    }
    asio::async_write(socket_, bufs_, [self = shared_from_this()](error_code ec, std::size_t) {
      self->writing_ = false;
      if (ec) return self->fail(ec.message());
      for (; self->in_flight_ > 0; --self->in_flight_) {
        self->queued_bytes_ -= self->out_.front().size();
        self->out_.pop_front();
      }
      self->flush();
    });
  }

  void fail(const std::string& why) { finish(1006, why); }

  void finish(uint16_t code, std::string reason) {
    if (done_) return;
    done_ = true;
    error_code ignored;
    if (!writing_)
      socket_.close(ignored);
    else
      socket_.shutdown(tcp::socket::shutdown_receive, ignored);
    if (h_.on_close) h_.on_close(code, std::move(reason));
  }

  Options opts_;
  Handlers h_;
  tcp::socket socket_;
  ws::FrameParser parser_;
  std::minstd_rand rng_;  // masks need not be secret here, only present
  asio::streambuf hs_;
  std::vector<uint8_t> rbuf_;
  std::size_t rlen_ = 0;
  std::deque<std::string> out_;
  std::vector<asio::const_buffer> bufs_;
  std::size_t in_flight_ = 0;
  std::size_t queued_bytes_ = 0;
  bool open_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool done_ = false;
};

}  // namespace

std::shared_ptr<WsClient> WsClient::create(asio::io_context& io, Options opts, Handlers handlers) {
  return std::make_shared<WsClientImpl>(io, std::move(opts), std::move(handlers));
}

}  // namespace converge::client
