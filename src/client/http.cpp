#include "client/http.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace converge::client {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

Result<HttpResult> http_call(const std::string& host, uint16_t port, const std::string& method,
                             const std::string& target, const std::string& body,
                             const std::string& token) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return make_error(Errc::bad_request, "bad host " + host);
  stream.connect(asio::ip::tcp::endpoint(addr, port), ec);
  if (ec) return make_error(Errc::unavailable, "connect: " + ec.message());
  http::request<http::string_body> req(http::string_to_verb(method), target, 11);
  req.set(http::field::host, host);
  req.set(http::field::content_type, "application/json");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  req.body() = body;
  req.prepare_payload();
  http::write(stream, req, ec);
  if (ec) return make_error(Errc::unavailable, "write: " + ec.message());
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(stream, buf, res, ec);
  if (ec) return make_error(Errc::unavailable, "read: " + ec.message());
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  return HttpResult{static_cast<int>(res.result_int()), std::move(res.body())};
}

}  // namespace converge::client
