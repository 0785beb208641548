// Listener and plain HTTP sessions; WebSocket upgrades are handed to ws_session.cpp.
#include "gateway/http/server.hpp"

#include <spdlog/spdlog.h>
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
#include <filesystem>
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

std::string_view mime_for(const std::string& path) {
  auto dot = path.rfind('.');
  std::string ext = dot == std::string::npos ? "" : path.substr(dot + 1);
  if (ext == "html") return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "json" || ext == "map") return "application/json";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "png") return "image/png";
  if (ext == "ico") return "image/x-icon";
  if (ext == "webmanifest") return "application/manifest+json";
  if (ext == "woff2") return "font/woff2";
  return "application/octet-stream";
}

class HttpSession final : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(HttpServer::Impl& ctx, std::size_t loop, tcp::socket socket)
      : ctx_(ctx), loop_(loop), stream_(std::move(socket)) {}

  void run() {
    ctx_.metrics.http_connections.add(1);
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
    if (ec) return close();
    auto& req = parser_->get();
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
    auto version = req.version();
    std::string target(req.target());
    auto parsed = boost::urls::parse_origin_form(target);
    std::string path = parsed ? std::string(parsed->path()) : target;

    if (beast::websocket::is_upgrade(req)) {
      if (path != "/ws")
        return reply(api_error(404, "not_found", "WebSocket endpoint is /ws"), version);
      std::string token;
      if (parsed)
        for (auto p : parsed->params())
          if (p.key == "token") token = p.value;
      if (token.empty())
        token = std::string(proto::strip_token_prefix(req[http::field::authorization]));
      std::string key(req[http::field::sec_websocket_key]);
      if (req[http::field::sec_websocket_version] != "13" || key.empty()) {
        keep_alive_ = false;
        ApiResponse r =
            api_error(426, "bad_request", "WebSocket version 13 with a key is required");
        r.headers["Sec-WebSocket-Version"] = "13";
        return reply(std::move(r), version);
      }
      auto early = buf_.cdata();
      std::string rest(static_cast<const char*>(early.data()), early.size());
      ctx_.untrack(this);
      stream_.expires_never();
      start_ws_session(ctx_, loop_, stream_.release_socket(), key, std::move(rest),
                       std::move(token));
      return;
    }

    if (path == "/healthz") return reply(handle_healthz(), version);
    if (path == "/metrics") return reply(handle_metrics(ctx_.metrics), version);
    if (path.starts_with("/api/")) {
      ApiRequest api;
      api.method = std::string(req.method_string());
      api.target = std::move(target);
      api.authorization = std::string(req[http::field::authorization]);
      api.content_type = std::string(req[http::field::content_type]);
      api.body = std::move(req.body());
      auto self = shared_from_this();
      ctx_.svc.run_blocking([self, api = std::move(api), version] {
        auto res = handle_api(self->ctx_.svc, self->ctx_.opts.api, api);
        asio::post(self->stream_.get_executor(), [self, res = std::move(res), version]() mutable {
          self->reply(std::move(res), version);
        });
      });
      return;
    }
    if (req.method() == http::verb::get || req.method() == http::verb::head)
      return reply(static_file(path), version);
    reply(api_error(404, "not_found", "no such endpoint"), version);
  }

  ApiResponse static_file(const std::string& path) {
    namespace fs = std::filesystem;
    if (ctx_.opts.web_root.empty())
      return api_error(404, "not_found", "this node serves no web client");
    if (path.find("..") != std::string::npos || path.empty() || path[0] != '/')
      return api_error(404, "not_found", "not found");
    fs::path root(ctx_.opts.web_root);
    fs::path p = root / (path == "/" ? std::string("index.html") : path.substr(1));
    std::error_code ec;
    if (!fs::is_regular_file(p, ec)) {
      // Single-page app: unknown paths without an extension get the index.
      if (path.find('.') != std::string::npos) return api_error(404, "not_found", "not found");
      p = root / "index.html";
      if (!fs::is_regular_file(p, ec)) return api_error(404, "not_found", "not found");
    }
    ApiResponse r;
    r.content_type = std::string(mime_for(p.string()));
    r.file_path = p.string();
    r.headers["Cache-Control"] = p.filename() == "index.html" ? "no-cache" : "public, max-age=3600";
    return r;
  }

  void reply(ApiResponse res, unsigned version) {
    if (res.status >= 400) ctx_.metrics.errors_total.add();
    if (!res.file_path.empty()) {
      http::file_body::value_type body;
      beast::error_code ec;
      body.open(res.file_path.c_str(), beast::file_mode::scan, ec);
      if (ec) return reply(api_error(500, "internal", "cannot open file"), version);
      auto r = std::make_shared<http::response<http::file_body>>(http::status::ok, version);
      r->body() = std::move(body);
      fill(*r, res);
      r->prepare_payload();
      return write(r);
    }
    auto r = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(res.status), version);
    r->body() = std::move(res.body);
    fill(*r, res);
    r->prepare_payload();
    write(r);
  }

  template <class Res>
  void fill(Res& r, const ApiResponse& res) {
    r.set(http::field::server, "converge");
    r.set(http::field::content_type, res.content_type);
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
  bool keep_alive_ = true;
  bool draining_ = false;    // answered 413: discard the rest of the body, then close
  std::size_t drained_ = 0;  // bytes discarded so far
};

void do_accept(HttpServer::Impl& ctx) {
  std::size_t loop = ctx.io.next_index();
  ctx.acceptor->async_accept(
      ctx.io.loop(loop), [&ctx, loop](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || ctx.stopping) return;
        if (!ec) {
          ctx.metrics.connections_total.add();
          beast::error_code ignored;
          socket.set_option(tcp::no_delay(true), ignored);
          // The socket belongs to `loop`; start it there.
          asio::post(ctx.io.loop(loop),
                     [&ctx, loop, s = std::make_shared<tcp::socket>(std::move(socket))]() mutable {
                       std::make_shared<HttpSession>(ctx, loop, std::move(*s))->run();
                     });
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
