#include "client/webhook.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <chrono>

namespace converge::client {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr std::size_t kAnswerBodyMax = 64 << 10;

bool url_char_ok(char c) {
  return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7F && c != '#';
}
}  // namespace

Result<WebhookUrl> parse_webhook_url(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::bad_request, "push_webhook_url " + std::string(url) + ": " + why);
  };
  constexpr std::string_view scheme = "http://";
  if (url.starts_with("https://"))
    return bad("https is not supported: point it at a TLS-terminating relay (http://)");
  if (!url.starts_with(scheme)) return bad("expected http://host[:port]/path");
  for (char c : url)
    if (!url_char_ok(c)) return bad("spaces, control characters and fragments are not allowed");
  std::string_view rest = url.substr(scheme.size());
  const auto slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  WebhookUrl out;
  out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (out.target.front() == '?') out.target.insert(0, "/");
  if (authority.find('@') != std::string_view::npos) return bad("user info is not allowed");
  out.host_header = std::string(authority);
  std::string_view host = authority, port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unclosed [");
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("expected :port after ]");
      port = after.substr(1);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("an IPv6 address goes in [ ]");
  }
  if (host.empty()) return bad("no host");
  if (!port.empty()) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc{} || p != port.data() + port.size() || v == 0 || v > 65535)
      return bad("bad port");
    out.port = static_cast<uint16_t>(v);
  }
  out.host = std::string(host);
  return out;
}

WebhookAnswer WebhookClient::post(const std::string& body, const std::string& signature) const {
  asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  http::request<http::string_body> req(http::verb::post, url_.target, 11);
  req.set(http::field::host, url_.host_header);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::user_agent, user_agent_);
  req.set("X-Converge-Signature", signature);
  req.keep_alive(false);
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kAnswerBodyMax);

  WebhookAnswer out;
  bool finished = false;
  auto fail = [&](const char* what, beast::error_code ec) {
    finished = true;
    out.error = ec == beast::error::timeout ? std::string("timeout")
                                            : std::string(what) + ": " + ec.message();
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  resolver.async_resolve(
      url_.host, std::to_string(url_.port),
      [&](beast::error_code ec, const tcp::resolver::results_type& results) {
        if (ec) return fail("resolve", ec);
        stream.expires_at(deadline);
        stream.async_connect(results, [&](beast::error_code ec, const tcp::endpoint&) {
          if (ec) return fail("connect", ec);
          http::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
            if (ec) return fail("write", ec);
            http::async_read(stream, buf, parser, [&](beast::error_code ec, std::size_t) {
              finished = true;
              // A status line and headers are an answer, whatever became of the body.
              if (parser.is_header_done()) {
                out.status = static_cast<int>(parser.get().result_int());
                return;
              }
              fail("read", ec ? ec : beast::error_code(http::error::partial_message));
            });
          });
        });
      });
  // The stream's deadline bounds connect, write and read; this bounds the name lookup too.
  io.run_until(deadline + std::chrono::milliseconds(50));
  if (!finished) out.error = "timeout";
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return out;
}

}  // namespace converge::client
