#include "transport.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <deque>
#include <vector>

#include "client/ws_client.hpp"

namespace converge::bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

class WsConn final : public Conn {
 public:
  WsConn(asio::io_context& io, const std::string& host, uint16_t port, const std::string& path,
         const std::string& local, Handlers h) {
    client::WsClient::Options o;
    o.host = host;
    o.port = port;
    o.path = path;
    o.local_address = local;
    client::WsClient::Handlers ch;
    ch.on_open = std::move(h.on_open);
    ch.on_text = h.on_message;
    ch.on_binary = std::move(h.on_message);
    ch.on_close = [cb = std::move(h.on_close)](uint16_t c, std::string why) {
      if (cb) cb(c, why);
    };
    c_ = client::WsClient::create(io, std::move(o), std::move(ch));
  }
  void start() override { c_->connect(); }
  void send(std::string_view p) override { c_->send_text(p); }
  void send_binary(std::string_view p) override { c_->send_binary(p); }
  void close() override { c_->close(1000); }

 private:
  std::shared_ptr<client::WsClient> c_;
};

class TcpConn final : public Conn, public std::enable_shared_from_this<TcpConn> {
 public:
  TcpConn(asio::io_context& io, std::string host, uint16_t port, std::string local, Handlers h,
          bool framed)
      : s_(io),
        host_(std::move(host)),
        port_(port),
        local_(std::move(local)),
        h_(std::move(h)),
        framed_(framed) {}

  void start() override {
    error_code ec;
    tcp::endpoint ep(asio::ip::make_address(host_), port_);
    s_.open(ep.protocol(), ec);
    if (!local_.empty()) s_.bind(tcp::endpoint(asio::ip::make_address(local_), 0), ec);
    s_.async_connect(ep, [self = shared_from_this()](error_code e) {
      if (e) return self->fail(e.message());
      error_code ignored;
      self->s_.set_option(tcp::no_delay(true), ignored);
      self->open_ = true;
      if (self->h_.on_open) self->h_.on_open();
      self->flush();
      self->buf_.resize(self->framed_ ? 64 << 10 : 16 << 10);
      self->read();
    });
  }
  void send(std::string_view p) override {
    if (!framed_) {
      out_.emplace_back(p);
    } else {
      std::string f(4, '\0');
      uint32_t n = static_cast<uint32_t>(p.size());
      for (int i = 0; i < 4; ++i)
        f[static_cast<std::size_t>(i)] = static_cast<char>(n >> (24 - 8 * i));
      f.append(p);
      out_.push_back(std::move(f));
    }
    if (open_) flush();
  }
  void close() override {
    error_code ignored;
    s_.shutdown(tcp::socket::shutdown_both, ignored);
  }

 private:
  void read() {
    s_.async_read_some(asio::buffer(buf_.data() + len_, buf_.size() - len_),
                       [self = shared_from_this()](error_code e, std::size_t n) {
                         if (e) return self->fail(e.message());
                         if (!self->framed_) {  // a stream: the protocol frames it itself
                           if (self->h_.on_message)
                             self->h_.on_message(std::string_view(self->buf_.data(), n));
                           return self->read();
                         }
                         self->len_ += n;
                         std::size_t off = 0;
                         while (self->len_ - off >= 4) {
                           auto* p = reinterpret_cast<const uint8_t*>(self->buf_.data() + off);
                           uint32_t fl = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                                         (uint32_t{p[2]} << 8) | p[3];
                           if (self->len_ - off < 4 + fl) {
                             if (4 + fl > self->buf_.size()) self->buf_.resize(4 + fl);
                             break;
                           }
                           if (self->h_.on_message)
                             self->h_.on_message(std::string_view(self->buf_.data() + off + 4, fl));
                           off += 4 + fl;
                         }
                         std::memmove(self->buf_.data(), self->buf_.data() + off, self->len_ - off);
                         self->len_ -= off;
                         self->read();
                       });
  }
  void flush() {
    if (writing_ || out_.empty()) return;
    writing_ = true;
    bufs_.clear();
    for (auto& o : out_) {
      bufs_.emplace_back(o.data(), o.size());
      if (++inflight_ >= 64) break;
    }
    asio::async_write(s_, bufs_, [self = shared_from_this()](error_code e, std::size_t) {
      self->writing_ = false;
      if (e) return self->fail(e.message());
      for (; self->inflight_ > 0; --self->inflight_) self->out_.pop_front();
      self->flush();
    });
  }
  void fail(const std::string& why) {
    if (done_) return;
    done_ = true;
    if (h_.on_close) h_.on_close(1006, why);
  }

  tcp::socket s_;
  std::string host_;
  uint16_t port_;
  std::string local_;
  Handlers h_;
  std::vector<char> buf_;
  std::size_t len_ = 0;
  std::deque<std::string> out_;
  std::vector<asio::const_buffer> bufs_;
  std::size_t inflight_ = 0;
  bool framed_ = true;
  bool open_ = false, writing_ = false, done_ = false;
};

}  // namespace

std::shared_ptr<Conn> make_ws_conn(asio::io_context& io, const std::string& host, uint16_t port,
                                   const std::string& path, const std::string& local,
                                   Conn::Handlers h) {
  return std::make_shared<WsConn>(io, host, port, path, local, std::move(h));
}

std::shared_ptr<Conn> make_tcp_conn(asio::io_context& io, const std::string& host, uint16_t port,
                                    const std::string& local, Conn::Handlers h) {
  return std::make_shared<TcpConn>(io, host, port, local, std::move(h), true);
}

std::shared_ptr<Conn> make_stream_conn(asio::io_context& io, const std::string& host, uint16_t port,
                                       const std::string& local, Conn::Handlers h) {
  return std::make_shared<TcpConn>(io, host, port, local, std::move(h), false);
}

}  // namespace converge::bench
