#include "targets.hpp"

#include <boost/json.hpp>
#include <charconv>
#include <cstring>
#include <map>

#include "base/crypto.hpp"
#include "client/http.hpp"

namespace converge::bench {

namespace json = boost::json;

namespace {

// memmem: string_view::find tries every '"' with a memcmp, a tenth of the generator's time.
std::string_view after(std::string_view s, std::string_view key) {
  const void* p = ::memmem(s.data(), s.size(), key.data(), key.size());
  if (!p) return {};
  auto at = static_cast<std::size_t>(static_cast<const char*>(p) - s.data());
  return s.substr(at + key.size());
}

// Converge: users and groups set up over HTTP, WebSocket with ?token=, the seed envelope.
class ConvergeTarget final : public Target {
 public:
  explicit ConvergeTarget(Endpoint ep) : ep_(std::move(ep)), run_(random_hex(3)) {
    if (ep_.ports.empty()) ep_.ports.push_back(ep_.port);
    ep_.port = ep_.ports.front();
  }
  std::string name() const override { return "converge"; }

  Status prepare(const std::vector<std::vector<int>>& groups, int conns, int users) override {
    users_ = users;
    tokens_.resize(static_cast<std::size_t>(users));
    for (int u = 0; u < users; ++u) {
      std::string id = "b" + run_ + "_" + std::to_string(u);
      json::object reg{{"user_id", id}, {"password", "bench"}};
      auto r = client::http_call(ep_.host, ep_.port, "POST", "/api/v1/users", json::serialize(reg));
      if (!r || r->status != 201)
        return make_error(Errc::internal,
                          "register " + id + ": " + (r ? r->body : r.error().message));
      json::object login{{"user_id", id}, {"password", "bench"}, {"device_id", "bench"}};
      auto l =
          client::http_call(ep_.host, ep_.port, "POST", "/api/v1/login", json::serialize(login));
      if (!l || l->status != 200) return make_error(Errc::internal, "login " + id);
      tokens_[static_cast<std::size_t>(u)] =
          std::string(json::parse(l->body).at("token").as_string());
    }
    conv_.assign(groups.size(), "");
    conn_group_.assign(static_cast<std::size_t>(conns), -1);
    for (std::size_t g = 0; g < groups.size(); ++g) {
      json::array members;
      for (int c : groups[g]) {
        members.emplace_back("b" + run_ + "_" + std::to_string(c % users));
        conn_group_[static_cast<std::size_t>(c)] = static_cast<int>(g);
      }
      bool direct = groups[g].size() == 2;
      json::object body{{"type", direct ? "direct" : "group"}, {"members", members}};
      auto r = client::http_call(ep_.host, ep_.port, "POST", "/api/v1/conversations",
                                 json::serialize(body), token(groups[g].front()));
      if (!r || (r->status != 201 && r->status != 200))
        return make_error(Errc::internal,
                          "create conversation: " + (r ? r->body : r.error().message));
      conv_[g] = std::string(json::parse(r->body).at("id").as_string());
    }
    return ok_status();
  }

  std::shared_ptr<Conn> connect(boost::asio::io_context& io, int conn, const std::string& local,
                                Conn::Handlers h) override {
    return make_ws_conn(io, ep_.host, ep_.ports[static_cast<std::size_t>(node_of(conn))],
                        "/ws?token=" + token(conn), local, std::move(h));
  }
  int node_of(int conn) const override {
    return static_cast<int>(static_cast<std::size_t>(conn) % ep_.ports.size());
  }
  std::vector<std::string> on_open(int) override { return {}; }
  bool ready_on_open() const override { return false; }

  std::string publish(int conn, int group, std::string_view body, uint64_t id) override {
    std::string f = R"({"cmd":"msg","id":)" + std::to_string(id) +
                    R"(,"data":{"conversation_id":")" + conv_[static_cast<std::size_t>(group)] +
                    R"(","type":"text","body":")";
    f += body;
    f += R"(","client_msg_id":")" + std::to_string(conn) + "-" + std::to_string(id) + "\"}}";
    return f;
  }

  Parsed parse(std::string_view f) const override {
    if (f.starts_with(R"({"cmd":"msg")")) {
      auto b = after(f, R"("body":")");
      return {Kind::delivery, b.substr(0, b.find('"'))};
    }
    if (f.starts_with(R"({"cmd":"ack")")) {
      auto id = after(f, R"("id":)");
      return {Kind::ack, id.substr(0, id.find(','))};
    }
    if (f.starts_with(R"({"cmd":"ready")")) return {Kind::ready, {}};
    if (f.starts_with(R"({"cmd":"error")")) return {Kind::error, f};
    if (f.starts_with(R"({"cmd":"sync")")) return {Kind::other, f};
    return {};
  }

  std::string heartbeat() const override { return R"({"cmd":"heartbeat","data":{}})"; }

  std::string sync_request(uint64_t id, const std::string& cursor) const override {
    std::string f = R"({"cmd":"sync","id":)" + std::to_string(id) + R"(,"data":{"limit":1000)";
    if (!cursor.empty()) f += R"(,"cursor":")" + cursor + "\"";
    return f + "}}";
  }

 private:
  const std::string& token(int conn) const {
    return tokens_[static_cast<std::size_t>(conn % users_)];
  }
  Endpoint ep_;
  std::string run_;  // distinguishes the users of one bench run from earlier runs on the node
  int users_ = 1;
  std::vector<std::string> tokens_;
  std::vector<std::string> conv_;
  std::vector<int> conn_group_;
};

// Peers that take the group from the connection (a URL query or a join frame).
class PeerTarget : public Target {
 public:
  explicit PeerTarget(Endpoint ep) : ep_(std::move(ep)) {}
  Status prepare(const std::vector<std::vector<int>>& groups, int conns, int) override {
    group_.assign(static_cast<std::size_t>(conns), 0);
    for (std::size_t g = 0; g < groups.size(); ++g)
      for (int c : groups[g]) group_[static_cast<std::size_t>(c)] = static_cast<int>(g);
    return ok_status();
  }

 protected:
  int group(int conn) const { return group_[static_cast<std::size_t>(conn)]; }
  Endpoint ep_;
  std::vector<int> group_;
};

// The ceiling: [u32 len]["J" group] joins, ["P" body] is sent to every member of the group.
class TcpTarget final : public PeerTarget {
 public:
  using PeerTarget::PeerTarget;
  std::string name() const override { return "tcp"; }
  std::shared_ptr<Conn> connect(boost::asio::io_context& io, int, const std::string& local,
                                Conn::Handlers h) override {
    return make_tcp_conn(io, ep_.host, ep_.port, local, std::move(h));
  }
  std::vector<std::string> on_open(int conn) override {
    return {"J" + std::to_string(group(conn))};
  }
  bool ready_on_open() const override { return true; }
  std::string publish(int, int, std::string_view body, uint64_t) override {
    return "P" + std::string(body);
  }
  Parsed parse(std::string_view f) const override {
    if (f.starts_with("P")) return {Kind::delivery, f.substr(1)};
    return {};
  }
};

// A Node `ws` server broadcasting each text frame to its room (?room=g).
class NodeWsTarget final : public PeerTarget {
 public:
  using PeerTarget::PeerTarget;
  std::string name() const override { return "ws"; }
  std::shared_ptr<Conn> connect(boost::asio::io_context& io, int conn, const std::string& local,
                                Conn::Handlers h) override {
    return make_ws_conn(io, ep_.host, ep_.port, "/?room=" + std::to_string(group(conn)), local,
                        std::move(h));
  }
  std::vector<std::string> on_open(int) override { return {}; }
  bool ready_on_open() const override { return true; }
  std::string publish(int, int, std::string_view body, uint64_t) override {
    return std::string(body);
  }
  Parsed parse(std::string_view f) const override { return {Kind::delivery, f}; }
};

// socket.io 4 (engine.io 4 over WebSocket): "40" connects, 42["msg",body] events, "2"/"3" pings.
class SocketIoTarget final : public PeerTarget {
 public:
  using PeerTarget::PeerTarget;
  std::string name() const override { return "socketio"; }
  std::shared_ptr<Conn> connect(boost::asio::io_context& io, int conn, const std::string& local,
                                Conn::Handlers h) override {
    return make_ws_conn(io, ep_.host, ep_.port,
                        "/socket.io/?EIO=4&transport=websocket&room=" + std::to_string(group(conn)),
                        local, std::move(h));
  }
  std::vector<std::string> on_open(int) override { return {"40"}; }
  bool ready_on_open() const override { return false; }
  std::string publish(int, int, std::string_view body, uint64_t) override {
    return "42[\"msg\",\"" + std::string(body) + "\"]";
  }
  Parsed parse(std::string_view f) const override {
    if (f.starts_with("42[\"msg\",\"")) {
      auto b = f.substr(10);  // after 42["msg","
      return {Kind::delivery, b.substr(0, b.find('"'))};
    }
    if (f.starts_with("40")) return {Kind::ready, {}};
    if (f == "2") return {Kind::ping, {}};
    return {};
  }
  std::string pong(std::string_view) const override { return "3"; }
};

}  // namespace

std::unique_ptr<Target> make_target(const std::string& name, Endpoint ep) {
  if (name == "converge") return std::make_unique<ConvergeTarget>(std::move(ep));
  if (name == "tcp") return std::make_unique<TcpTarget>(std::move(ep));
  if (name == "ws") return std::make_unique<NodeWsTarget>(std::move(ep));
  if (name == "socketio") return std::make_unique<SocketIoTarget>(std::move(ep));
  return nullptr;
}

}  // namespace converge::bench
