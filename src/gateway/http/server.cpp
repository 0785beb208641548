// Listener and plain HTTP sessions; WebSocket upgrades are handed to ws_session.cpp.
#include "gateway/http/server.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/file_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>  // is_upgrade
#include <boost/url/parse.hpp>

#include <boost/beast/core/file.hpp>
#include <thread>

#include "base/metrics.hpp"
#include "gateway/http/context.hpp"
#include "net/io_pool.hpp"
#include "proto/codec.hpp"
#include "service/service.hpp"

namespace converge {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kReadTimeout = std::chrono::seconds(30);

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 6455 section 4.1: the key is the base64 encoding of 16 bytes (24 characters, "==" last).
bool valid_ws_key(std::string_view k) {
  if (k.size() != 24 || k.substr(22) != "==") return false;
  for (char c : k.substr(0, 22))
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/') return false;
  return true;
}

class HttpSession final : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(HttpServer::Impl& ctx, std::size_t loop, tcp::socket socket)
      : ctx_(ctx), loop_(loop), stream_(std::move(socket)) {}

  void run() {
    ctx_.metrics.http_connections.add(1);
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string();
    std::weak_ptr<HttpSession> weak = weak_from_this();
    auto exec = stream_.get_executor();
    ctx_.track(this, [weak, exec] {
      asio::post(exec, [weak] {
        if (auto s = weak.lock()) s->on_shutdown();
      });
    });
    do_read();
  }

  ~HttpSession() {
    ctx_.metrics.http_connections.add(-1);
    ctx_.untrack(this);
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(16 * 1024);
    // The route's own limit is applied once the target is known (on_header); until then the
    // parser must not refuse a Content-Length that some route allows.
    parser_->body_limit(std::max(ctx_.opts.max_file_bytes, ctx_.opts.max_http_body_bytes));
    stream_.expires_after(kReadTimeout);
    http::async_read_header(
        stream_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec == http::error::body_limit) return too_large();
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message) {
      // A request the parser refused (a NUL or control byte in the target, a malformed header):
      // say so before closing, rather than dropping the connection without an answer.
      keep_alive_ = false;
      if (ec == http::error::header_limit)
        return reply(api_error(431, "too_large", "request headers over the limit"), 11);
      return reply(api_error(400, "bad_request", "malformed request: " + ec.message()), 11);
    }
    if (ec) return close();
    auto& req = parser_->get();
    // Framing the node and a proxy in front of it could read differently is refused (request
    // smuggling): a Transfer-Encoding other than plain "chunked", or one beside Content-Length.
    if (req.count(http::field::transfer_encoding) > 0) {
      bool chunked = req.count(http::field::transfer_encoding) == 1 &&
                     iequals(trim(req[http::field::transfer_encoding]), "chunked");
      if (!chunked || req.count(http::field::content_length) > 0)
        return refuse_framing(req.version(), chunked
                                                 ? "Transfer-Encoding together with Content-Length"
                                                 : "unsupported Transfer-Encoding");
    }
    // Uploads may be large; every other body is small JSON.
    bool upload = req.method() == http::verb::post && req.target().starts_with("/api/v1/files");
    std::size_t limit = upload ? ctx_.opts.max_file_bytes : ctx_.opts.max_http_body_bytes;
    if (auto len = parser_->content_length(); len && *len > limit) return too_large();
    parser_->body_limit(limit);  // chunked bodies stop here
    if (req[http::field::expect] == "100-continue") {
      // curl asks before sending a large body.
      auto cont = std::make_shared<http::response<http::empty_body>>(http::status::continue_, 11);
      http::async_write(stream_, *cont,
                        [self = shared_from_this(), cont](beast::error_code ec2, std::size_t) {
                          if (ec2) return self->close();
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(
        stream_, buf_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_request(ec); });
  }

  void refuse_framing(unsigned version, const char* why) {
    keep_alive_ = false;
    draining_ = true;
    head_ = false;
    reply(api_error(400, "bad_request", why), version);
  }

  // Answers 413 and closes without reading the body: a lingering close (drain) lets the
  // client read the answer instead of getting a reset for the bytes it is still sending.
  void too_large() {
    keep_alive_ = false;
    draining_ = true;
    reply(api_error(413, "too_large", "request body over the limit"), 11);
  }

  void drain() {
    stream_.expires_after(std::chrono::seconds(2));
    auto scratch = std::make_shared<std::array<char, 16384>>();
    stream_.async_read_some(asio::buffer(*scratch), [self = shared_from_this(), scratch](
                                                        beast::error_code ec, std::size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > (64u << 20)) {
        beast::error_code ignored;
        self->stream_.socket().close(ignored);
        return;
      }
      self->drain();
    });
  }

  void on_request(beast::error_code ec) {
    if (ec == http::error::body_limit) return too_large();
    if (ec) return close();
    ctx_.metrics.http_requests_total.add();
    HttpRequest req = parser_->release();
    parser_.reset();
    keep_alive_ = req.keep_alive() && !ctx_.stopping;
    head_ = req.method() == http::verb::head;
    auto version = req.version();
    std::string target(req.target());
    auto parsed = boost::urls::parse_origin_form(target);
    if (!parsed) return reply(api_error(400, "bad_request", "bad request target"), version);
    std::string encoded_path(parsed->encoded_path());
    const bool api = encoded_path.starts_with("/api/");
    // Every route: no NUL, backslash or non-UTF-8 in the path; outside the API also no empty,
    // "." or ".." segments and no encoded '/'. The API's router reads decoded segments itself.
    if (auto st = check_path(encoded_path, api); !st) {
      auto r = error_response(st.error());
      if (!api) web_headers(r);
      return reply(std::move(r), version);
    }
    std::string path(parsed->path());

    if (beast::websocket::is_upgrade(req)) {
      if (path == "/mqtt" && ctx_.opts.mqtt_accept) return upgrade_mqtt(req, version);
      const bool echo = !ctx_.opts.ws_echo_path.empty() && path == ctx_.opts.ws_echo_path;
      if (path != "/ws" && !echo)
        return reply(api_error(404, "not_found", "WebSocket endpoint is /ws"), version);
      std::string token;
      for (auto p : parsed->params())
        if (p.key == "token") token = p.value;
      if (token.empty() && req.count(http::field::authorization) > 0) {
        auto t = proto::token_from_authorization(req[http::field::authorization]);
        if (!t)
          return reply(
              api_error(401, "unauthorized",
                        "Authorization needs a scheme: Bearer <token> (or Tricolor<token>)"),
              version);
        token = std::string(*t);
      }
      std::string key(trim(req[http::field::sec_websocket_key]));
      if (req[http::field::sec_websocket_version] != "13" || key.empty()) {
        keep_alive_ = false;
        ApiResponse r =
            api_error(426, "bad_request", "WebSocket version 13 with a key is required");
        r.headers["Sec-WebSocket-Version"] = "13";
        return reply(std::move(r), version);
      }
      if (!valid_ws_key(key)) {
        keep_alive_ = false;
        return reply(
            api_error(400, "bad_request", "Sec-WebSocket-Key must be the base64 of 16 bytes"),
            version);
      }
      auto early = buf_.cdata();
      std::string rest(static_cast<const char*>(early.data()), early.size());
      ctx_.untrack(this);
      stream_.expires_never();
      start_ws_session(ctx_, loop_, stream_.release_socket(), key, std::move(rest),
                       echo ? std::string() : std::move(token), echo);
      return;
    }

    if (path == "/healthz")
      return reply(
          handle_healthz(ctx_.svc.bus().node_id(), ctx_.svc.bus().connected(), ctx_.svc.store_ok()),
          version);
    if (path == "/metrics") return reply(handle_metrics(ctx_.metrics), version);
    if (api) {
      ApiRequest r;
      r.method = std::string(req.method_string());
      r.target = std::move(target);
      r.authorization = std::string(req[http::field::authorization]);
      r.content_type = std::string(req[http::field::content_type]);
      r.body = std::move(req.body());
      r.remote_address = remote_;
      if (head_) r.method = "GET";  // answered as GET, without the body
      const bool hashing = api_hashes_password(r.method, path);
      auto self = shared_from_this();
      auto job = [self, r = std::move(r), version] {
        auto res = handle_api(self->ctx_.svc, self->ctx_.opts.api, r);
        asio::post(self->stream_.get_executor(), [self, res = std::move(res), version]() mutable {
          self->reply(std::move(res), version);
        });
      };
      // Password hashing has its own bounded pool: a flood of logins waits there (or is
      // refused) instead of holding every thread other calls need.
      if (hashing) {
        if (!ctx_.svc.run_auth(std::move(job))) {
          ctx_.metrics.rate_limited_total.add();
          ApiResponse busy = api_error(429, "rate_limited", "too many logins in progress");
          busy.headers["Retry-After"] = "1";
          reply(std::move(busy), version);
        }
        return;
      }
      ctx_.svc.run_blocking(std::move(job));
      return;
    }
    if (req.method() == http::verb::get || req.method() == http::verb::head)
      return reply(static_file(encoded_path), version);
    reply(api_error(404, "not_found", "no such endpoint"), version);
  }

  // MQTT over WebSocket: the client must offer the subprotocol "mqtt", which the server must
  // select (MQTT 5 section 6: MQTT-6.0.0-3, -4). MQTT 3.1's "mqttv3.1" is not served (nor is
  // MQTT 3.1 over TCP). No token here: the CONNECT packet authenticates.
  void upgrade_mqtt(HttpRequest& req, unsigned version) {
    bool offered = false;
    for (auto it = req.find(http::field::sec_websocket_protocol);
         it != req.end() && it->name() == http::field::sec_websocket_protocol && !offered; ++it) {
      std::string_view list = it->value();
      while (!list.empty()) {
        auto comma = list.find(',');
        if (trim(list.substr(0, comma)) == "mqtt") offered = true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
    }
    if (!offered) {
      keep_alive_ = false;
      return reply(
          api_error(400, "bad_request", "MQTT over WebSocket needs Sec-WebSocket-Protocol: mqtt"),
          version);
    }
    std::string key(trim(req[http::field::sec_websocket_key]));
    if (req[http::field::sec_websocket_version] != "13" || key.empty()) {
      keep_alive_ = false;
      ApiResponse r = api_error(426, "bad_request", "WebSocket version 13 with a key is required");
      r.headers["Sec-WebSocket-Version"] = "13";
      return reply(std::move(r), version);
    }
    if (!valid_ws_key(key)) {
      keep_alive_ = false;
      return reply(
          api_error(400, "bad_request", "Sec-WebSocket-Key must be the base64 of 16 bytes"),
          version);
    }
    auto early = buf_.cdata();
    std::string rest(static_cast<const char*>(early.data()), early.size());
    ctx_.untrack(this);
    stream_.expires_never();
    start_mqtt_ws_session(ctx_, stream_.release_socket(), key, std::move(rest));
  }

  static void web_headers(ApiResponse& r) {
    for (auto& h : kWebClientHeaders) r.headers[h.name] = h.value;
  }

  ApiResponse static_file(const std::string& encoded_path) {
    auto f = ctx_.files.resolve(encoded_path);
    ApiResponse r;
    if (!f) {
      r = error_response(f.error());
    } else {
      r.content_type = f->mime;
      r.file_path = f->path;
      r.headers["Cache-Control"] = f->index ? "no-cache" : "public, max-age=3600";
    }
    web_headers(r);
    return r;
  }

  void reply(ApiResponse res, unsigned version) {
    if (res.status >= 400) ctx_.metrics.errors_total.add();
    const bool head = head_;
    head_ = false;
    if (!res.file_path.empty()) {
      // O_NOFOLLOW: the static route resolved every symlink already; a file swapped for one
      // since is refused rather than followed.
      int fd = ::open(res.file_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      struct stat st {};
      if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) ::close(fd);
        return reply(api_error(404, "not_found", "not found"), version);
      }
      if (head) {
        ::close(fd);
        return write_head(res, http::status::ok, version, static_cast<uint64_t>(st.st_size));
      }
      beast::file f;
      f.native_handle(fd);
      http::file_body::value_type body;
      beast::error_code ec;
      body.reset(std::move(f), ec);
      if (ec) return reply(api_error(500, "internal", "cannot read file"), version);
      auto r = std::make_shared<http::response<http::file_body>>(http::status::ok, version);
      r->body() = std::move(body);
      fill(*r, res);
      r->prepare_payload();
      return write(r);
    }
    if (head)
      return write_head(res, static_cast<http::status>(res.status), version, res.body.size());
    auto r = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(res.status), version);
    r->body() = std::move(res.body);
    fill(*r, res);
    r->prepare_payload();
    write(r);
  }

  // HEAD: the headers a GET would get, Content-Length included, and no body.
  void write_head(const ApiResponse& res, http::status status, unsigned version, uint64_t length) {
    auto r = std::make_shared<http::response<http::empty_body>>(status, version);
    fill(*r, res);
    r->content_length(length);
    write(r);
  }

  template <class Res>
  void fill(Res& r, const ApiResponse& res) {
    r.set(http::field::server, "converge");
    r.set(http::field::content_type, res.content_type);
    r.set("X-Content-Type-Options", "nosniff");
    for (auto& [k, v] : res.headers) r.set(k, v);
    r.keep_alive(keep_alive_);
  }

  template <class Res>
  void write(std::shared_ptr<Res> r) {
    stream_.expires_after(kReadTimeout);
    http::async_write(stream_, *r,
                      [self = shared_from_this(), r](beast::error_code ec, std::size_t) {
                        if (ec || !self->keep_alive_) return self->close();
                        self->do_read();
                      });
  }

  void on_shutdown() {
    // Idle between requests: close now. Mid-request: keep_alive_ = false closes after the reply.
    keep_alive_ = false;
    if (!parser_ || !parser_->is_header_done()) close();
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (draining_) return drain();
    stream_.socket().close(ec);
  }

  HttpServer::Impl& ctx_;
  std::size_t loop_;
  beast::tcp_stream stream_;
  beast::flat_buffer buf_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string remote_;  // the peer's address
  bool keep_alive_ = true;
  bool head_ = false;        // the request being answered is a HEAD
  bool draining_ = false;    // answered 413: discard the rest of the body, then close
  std::size_t drained_ = 0;  // bytes discarded so far
};

void do_accept(HttpServer::Impl& ctx) {
  std::size_t loop = ctx.io.next_index();
  ctx.acceptor->async_accept(
      ctx.io.loop(loop), [&ctx, loop](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || ctx.stopping) return;
        if (!ec) {
          ctx.out_of_fds = false;
          ctx.metrics.connections_total.add();
          beast::error_code ignored;
          socket.set_option(tcp::no_delay(true), ignored);
          // The socket belongs to `loop`; start it there.
          asio::post(ctx.io.loop(loop),
                     [&ctx, loop, s = std::make_shared<tcp::socket>(std::move(socket))]() mutable {
                       std::make_shared<HttpSession>(ctx, loop, std::move(*s))->run();
                     });
        } else if (ec == asio::error::no_descriptors ||
                   ec == boost::system::errc::too_many_files_open_in_system ||
                   ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
          // Out of descriptors: accepting again at once would spin on the same error (a core
          // and a log line per try). The connection waits in the backlog; try every 100 ms.
          if (!ctx.out_of_fds) spdlog::warn("accept: {}: retrying every 100 ms", ec.message());
          ctx.out_of_fds = true;
          ctx.accept_backoff->expires_after(std::chrono::milliseconds(100));
          ctx.accept_backoff->async_wait([&ctx](beast::error_code e) {
            if (!e && !ctx.stopping) do_accept(ctx);
          });
          return;
        } else {
          spdlog::warn("accept: {}", ec.message());
        }
        do_accept(ctx);
      });
}

}  // namespace

HttpServer::HttpServer(HttpServerOptions opts, Service& svc, Hub& hub, IoPool& io, Metrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(opts), svc, hub, io, metrics)) {}

HttpServer::~HttpServer() = default;

Status HttpServer::listen(const std::string& host, uint16_t port) {
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return make_error(Errc::bad_request, "listen: bad address " + host);
  tcp::endpoint ep(addr, port);
  auto& a = impl_->acceptor.emplace(impl_->io.loop(0));
  impl_->accept_backoff.emplace(impl_->io.loop(0));
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(Errc::unavailable,
                      "listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  do_accept(*impl_);
  return ok_status();
}

uint16_t HttpServer::port() const {
  return impl_->acceptor ? impl_->acceptor->local_endpoint().port() : 0;
}

void HttpServer::shutdown(int64_t grace_ms) {
  impl_->stopping = true;
  if (impl_->acceptor) {
    asio::post(impl_->acceptor->get_executor(), [this] {
      beast::error_code ec;
      impl_->acceptor->close(ec);
      impl_->accept_backoff->cancel();
    });
  }
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard lk(impl_->live_mu);
    for (auto& [_, fn] : impl_->live) hooks.push_back(fn);
  }
  for (auto& h : hooks) h();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (impl_->live_count() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (auto n = impl_->live_count(); n > 0) spdlog::warn("{} connections still open at stop", n);
}

}  // namespace converge
