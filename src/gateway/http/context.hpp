#pragma once
// Shared by the two translation units of the HTTP server (server.cpp, ws_session.cpp). Beast
// headers stop here: nothing outside gateway/http includes this file.
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "gateway/http/server.hpp"
#include "gateway/http/static_files.hpp"

namespace converge {

struct HttpServer::Impl {
  Impl(HttpServerOptions o, Service& s, Hub& h, IoPool& i, Metrics& m)
      : opts(std::move(o)),
        files(opts.web_root, opts.data_dir),
        svc(s),
        hub(h),
        io(i),
        metrics(m) {}

  HttpServerOptions opts;
  StaticFiles files;
  Service& svc;
  Hub& hub;  // shard i belongs to network loop i
  IoPool& io;
  Metrics& metrics;
  std::optional<boost::asio::ip::tcp::acceptor> acceptor;
  std::optional<boost::asio::steady_timer> accept_backoff;  // paused while out of descriptors
  bool out_of_fds = false;  // the acceptor's thread only: logged once per episode
  std::atomic<bool> stopping{false};

  // Open connections and how to ask each to close; touched at connect/close only.
  std::mutex live_mu;
  std::unordered_map<const void*, std::function<void()>> live;
  void track(const void* key, std::function<void()> shutdown) {
    std::lock_guard lk(live_mu);
    live.emplace(key, std::move(shutdown));
  }
  void untrack(const void* key) {
    std::lock_guard lk(live_mu);
    live.erase(key);
  }
  std::size_t live_count() {
    std::lock_guard lk(live_mu);
    return live.size();
  }
};

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;

// Takes over a connection whose request is a valid WebSocket upgrade on /ws: answers 101 and
// frames the connection (gateway/ws/frame.hpp). `early` holds bytes read past the request;
// `token` is from ?token= or the Authorization header (empty: expect an auth frame).
// `echo`: the conformance endpoint (ws_echo_path): no authentication, every message is sent back.
void start_ws_session(HttpServer::Impl& ctx, std::size_t loop, boost::asio::ip::tcp::socket socket,
                      const std::string& client_key, std::string early, std::string token,
                      bool echo = false);

// Takes over a valid WebSocket upgrade on /mqtt that offered the subprotocol "mqtt" (MQTT 5
// section 6, 3.1.1 the same): answers 101 selecting it and carries MQTT bytes in binary
// messages between the socket and the Client that opts.mqtt_accept returns for it.
void start_mqtt_ws_session(HttpServer::Impl& ctx, boost::asio::ip::tcp::socket socket,
                           const std::string& client_key, std::string early);

}  // namespace converge
