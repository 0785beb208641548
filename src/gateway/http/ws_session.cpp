// The WebSocket session: one device's live connection (DESIGN.md section 3).
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <deque>

#include <cerrno>

#include "base/clock.hpp"
#include "base/metrics.hpp"
#include "base/utf8.hpp"
#include "gateway/http/commands.hpp"
#include "gateway/http/context.hpp"
#include "gateway/ws/frame.hpp"
#include "net/io_pool.hpp"
#include "proto/codec.hpp"
#include "service/device_stream.hpp"
#include "service/rooms.hpp"
#include "service/service.hpp"

namespace converge {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
namespace json = boost::json;

namespace {

constexpr uint16_t kCloseHeartbeatTimeout = ws::heartbeat_timeout;
constexpr uint16_t kCloseUnauthorized = ws::unauthorized;
constexpr std::size_t kReadChunk = 16 << 10;          // bytes asked of the socket per read
constexpr std::size_t kMaxIovPerWrite = 128;          // buffers (a frame is two) in one sendmsg
constexpr std::size_t kMaxBytesPerWrite = 256 << 10;  // bytes gathered into one write
constexpr int kMaxWritesPerFlush = 4;                 // then the others on this thread go first
constexpr std::size_t kMaxPendingBeforeAuth = 64;

class WsSession final : public std::enable_shared_from_this<WsSession>,
                        public DeviceSink,
                        public RoomSink,
                        private ws::FrameParser::Handler {
 public:
  WsSession(HttpServer::Impl& ctx, std::size_t loop, tcp::socket socket, std::string token,
            bool echo)
      : echo_(echo),
        ctx_(ctx),
        loop_(loop),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        expiry_(socket_.get_executor()),
        parser_(ctx.opts.max_frame_bytes),
        pending_token_(std::move(token)) {}

  ~WsSession() override = default;

  // The upgrade request was validated by the HTTP session; answer 101 and start framing.
  // `early` holds bytes the client sent after its request, already read from the socket.
  void run(const std::string& client_key, std::string early) {
    std::string res =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Server: converge\r\nSec-WebSocket-Accept: " +
        ws::accept_key(client_key) + "\r\n\r\n";
    carry_ = std::move(early);
    Out o;
    o.payload = std::make_shared<const std::string>(std::move(res));
    o.raw = true;
    queued_bytes_ += o.payload->size();
    queue_.push_back(std::move(o));
    flush();
    on_accept();
  }

  // --- DeviceSink (network thread) ---
  const std::string& sink_user_id() const override { return auth_.user_id; }

  void deliver(const std::shared_ptr<const Delivery>& d) override {
    if (stream_) stream_->on_delivery(d);
  }

  // --- RoomSink (network thread) ---
  bool room_frame(const std::shared_ptr<const std::string>& frame, int64_t at_us) override {
    if (closing_ || dead_) return false;
    // A listener behind loses audio, never the connection: frames past a small backlog go now,
    // and frames that wait in the queue past voice_max_delay_ms go before the next write.
    if (queued_bytes_ > voice_backlog()) return false;
    send_frame(ws::binary, frame, at_us);
    return true;
  }
  void room_event(const std::shared_ptr<const std::string>& frame) override { send(frame); }

  void resync() override {
    if (!stream_ || finished_) return;
    auto self = shared_from_this();
    ctx_.svc.run_blocking([self] {
      auto convs = self->ctx_.svc.list_conversations(self->auth_);
      if (!convs) return;
      SeqMap last;
      for (auto& c : convs.value()) last[c.id] = c.last_seq;
      asio::post(self->socket_.get_executor(), [self, last = std::move(last)] {
        if (self->stream_) self->stream_->catch_up(last);
      });
    });
  }

  void notify(const std::shared_ptr<const Notice>& n) override {
    if (n->kind == Notice::Kind::revoke) {
      bool mine = n->token_hash.empty() ? auth_.token_hash != n->keep_token_hash
                                        : auth_.token_hash == n->token_hash;
      if (mine) {
        // Posted: we are inside the hub's loop over this user's sinks.
        asio::post(socket_.get_executor(),
                   [self = shared_from_this()] { self->close_unauthorized("token revoked"); });
      }
      return;
    }
    ctx_.metrics.notices_total.add();
    if (n->kind == Notice::Kind::conversation) {
      if (stream_) {
        const auto& ms = n->conversation.members;
        bool member = std::any_of(ms.begin(), ms.end(),
                                  [&](const Member& m) { return m.user_id == auth_.user_id; });
        if (member && (n->change == "created" || n->change == "member_added"))
          stream_->join(n->conversation.id, n->conversation.last_seq);
        else if (!member)
          stream_->leave(n->conversation.id);
      }
      // Built per recipient: `muted` is the recipient's own flag. Rare (membership changes).
      auto data = proto::conversation_json(n->conversation, auth_.user_id);
      data["change"] = n->change;
      if (!n->event_json.empty())
        if (auto ev = proto::parse_object(n->event_json)) data["event"] = std::move(ev.value());
      return send(std::make_shared<const std::string>(proto::frame("conversation", "", data)));
    }
    // Admin notices reach admins' connections only (the token says so, not the routing).
    if (n->kind == Notice::Kind::admin && !auth_.is_admin) return;
    auto frame = n->wire.get(WireCache::ws_frame, [&] {
      std::string f;
      if (n->kind == Notice::Kind::event && !n->event_cmd.empty())
        f = R"({"cmd":")" + n->event_cmd + R"(","data":)";  // application, invitation, ...
      else
        f = n->kind == Notice::Kind::event   ? R"({"cmd":"event","data":)"
            : n->kind == Notice::Kind::admin ? R"({"cmd":"admin","data":)"
                                             : R"({"cmd":"broadcast","data":)";
      f += n->payload_json;
      f += '}';
      return f;
    });
    send(std::move(frame));
  }

 private:
  void on_accept() {
    accepted_ = true;
    ctx_.metrics.ws_connections.add(1);
    std::weak_ptr<WsSession> weak = weak_from_this();
    auto exec = socket_.get_executor();
    ctx_.track(this, [weak, exec] {
      asio::post(exec, [weak] {
        if (auto s = weak.lock()) s->begin_close(ws::going_away, "node stopping");
      });
    });
    accepted_at_us_ = last_activity_us_ = mono_us();
    arm_timer(ctx_.opts.heartbeat_timeout_ms);
    if (!pending_token_.empty()) authenticate(std::move(pending_token_), "");
    error_code ignored;
    socket_.non_blocking(true, ignored);
    // Bytes that came with the upgrade request are framed before reading more.
    if (!carry_.empty()) {
      std::string early = std::move(carry_);
      carry_.clear();
      frame_bytes(reinterpret_cast<const uint8_t*>(early.data()), early.size());
    }
    wait_readable();
  }

  // An idle connection holds no read buffer: it waits for readability, then reads into its
  // thread's buffer (as Redis and muduo do). Only an incomplete frame header (under 14 bytes) is
  // kept per connection; payload bytes go straight into the parser's message.
  void wait_readable() {
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](error_code ec) { self->on_readable(ec); });
  }

  void on_readable(error_code ec) {
    if (ec) return finish();
    thread_local std::array<uint8_t, kReadChunk> buf;
    // A few reads per wake-up, then back to the loop so one busy client cannot starve others.
    for (int i = 0; i < 4; ++i) {
      std::size_t n = socket_.read_some(asio::buffer(buf), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      if (ec) return finish();  // includes EOF
      frame_bytes(buf.data(), n);
      if (n < buf.size()) break;
    }
    wait_readable();  // even while closing: the read side sees the end and runs finish()
  }

  void frame_bytes(const uint8_t* data, std::size_t n) {
    if (n == 0 || peer_closed_) return;
    last_activity_us_ = mono_us();
    if (!carry_.empty()) {  // a header split across reads: rare, so copying is fine
      carry_.append(reinterpret_cast<const char*>(data), n);
      std::string all = std::move(carry_);
      carry_.clear();
      return frame_bytes_now(reinterpret_cast<const uint8_t*>(all.data()), all.size());
    }
    frame_bytes_now(data, n);
  }

  void frame_bytes_now(const uint8_t* data, std::size_t n) {
    std::size_t used = parser_.feed(data, n, *this);
    if (parser_.failed()) {
      if (parser_.failure_code() == ws::too_big) ctx_.metrics.errors_total.add();
      peer_closed_ = true;  // read nothing more from a peer that broke the protocol
      begin_close(parser_.failure_code(), parser_.failure_reason());
      return;
    }
    if (used < n) carry_.assign(reinterpret_cast<const char*>(data + used), n - used);
  }

  // --- FrameParser::Handler ---
  void on_message(ws::Opcode op, std::string_view payload) override {
    if (closing_) return;
    if (echo_) return send_frame(op, std::make_shared<const std::string>(payload));
    if (op != ws::text) return on_binary(payload);
    handle_text(payload);
  }

  void on_ping(std::string_view payload) override {
    if (closing_) return;
    enqueue_control(ws::pong, std::string(payload));
  }

  void on_close(uint16_t code, std::string_view) override {
    peer_closed_ = true;
    // Echo the peer's code (the parser refused invalid ones with 1002), then shut our side down
    // once the echo is written.
    if (!closing_) begin_close(code, "");
  }

  void handle_text(std::string_view text) {
    std::string id;
    auto env = proto::parse_envelope(text, &id);
    if (!env) return send_error(id, env.error());
    auto& e = env.value();
    if (e.cmd == "auth") {
      if (authed_ || authenticating_)
        return send_error(e.id_json, make_error(Errc::bad_request, "already authenticated"));
      std::string token = e.token;
      if (token.empty()) {
        auto t = proto::get_string(e.data, "token", true, 256);
        if (!t) return send_error(e.id_json, t.error());
        token = std::string(proto::strip_token_prefix(t.value()));
      }
      return authenticate(std::move(token), e.id_json);
    }
    if (!authed_) {
      // Seed 000 clients put the token in every envelope: the first one authenticates the
      // connection, and commands wait for the answer (in order, a bounded few).
      if (!authenticating_ && !e.token.empty()) authenticate(e.token, "");
      if (authenticating_) {
        if (pending_.size() >= kMaxPendingBeforeAuth)
          return send_error(e.id_json,
                            make_error(Errc::unavailable, "too many frames before authentication"));
        pending_.push_back(std::move(e));
        return;
      }
      return send_error(
          e.id_json,
          make_error(Errc::unauthorized, "authenticate first: {\"cmd\":\"auth\",\"token\":...}"));
    }
    dispatch(e);
  }

  // Audio for a room (DESIGN.md section 7). Dropped frames are counted, not answered, except a
  // malformed one (a client bug): an error frame, and the connection goes on.
  void on_binary(std::string_view payload) {
    Rooms* rooms = ctx_.opts.api.rooms;
    if (!authed_ || !rooms)
      return send_error(
          "", make_error(Errc::bad_request, "binary frames carry room audio; join a room first"));
    if (!room_open_) {
      rooms->open_connection(static_cast<int>(loop_), room_conn_, this);
      room_open_ = true;
    }
    if (rooms->on_frame(room_conn_, payload) == Rooms::FrameResult::malformed)
      send_error("", make_error(Errc::bad_request,
                                "an audio frame is [u8 1][u32 room_id][u16 seq][payload]"));
  }

  void on_room_command(proto::Envelope& e) {
    Rooms* rooms = ctx_.opts.api.rooms;
    if (!rooms) return send_error(e.id_json, make_error(Errc::unknown_cmd, "no voice rooms here"));
    if (!room_open_) {
      rooms->open_connection(static_cast<int>(loop_), room_conn_, this);
      room_open_ = true;
    }
    auto self = shared_from_this();
    ctx_.svc.run_blocking(
        [self, rooms, cmd = std::move(e.cmd), id = e.id_json, data = std::move(e.data)] {
          auto r = run_room_command(*rooms, self->auth_, static_cast<int>(self->loop_),
                                    self->room_conn_, cmd, data);
          if (!r) self->ctx_.metrics.errors_total.add();
          auto f = std::make_shared<const std::string>(r ? proto::frame(cmd, id, r->body)
                                                         : proto::frame_error(id, r.error()));
          asio::post(self->socket_.get_executor(), [self, f] { self->send(f); });
        });
  }

  std::size_t voice_backlog() const {
    return std::min<std::size_t>(64 << 10, ctx_.opts.max_send_queue_bytes / 4);
  }

  void dispatch(proto::Envelope& e) {
    if (e.cmd == "msg") return on_msg(e);
    if (e.cmd == "heartbeat") return on_heartbeat(e);
    if (e.cmd == "sync") return on_sync(e);
    if (is_group_command(e.cmd)) return on_group_command(e);
    if (is_room_command(e.cmd)) return on_room_command(e);
    if (e.cmd == "ping")
      return send(
          std::make_shared<const std::string>(proto::frame("pong", e.id_json, {{"ts", now_ms()}})));
    if (e.cmd == "auth")
      return send_error(e.id_json, make_error(Errc::bad_request, "already authenticated"));
    send_error(e.id_json, make_error(Errc::unknown_cmd,
                                     "unknown cmd: " + std::string(utf8_truncate(e.cmd, 64))));
  }

  // --- auth: authenticate on the work pool, attach here, then read where the device stands ---
  void authenticate(std::string token, std::string id_json) {
    authenticating_ = true;
    auto self = shared_from_this();
    ctx_.svc.run_blocking([self, token = std::move(token), id_json = std::move(id_json)] {
      auto a = self->ctx_.svc.authenticate(token);
      // Where the conversations stand before `ready`: the live stream of a conversation this
      // device has no cursor for starts right after this, so nothing stored once the client
      // holds `ready` is missed, wherever in the cluster it was stored.
      SeqMap floor;
      if (a)
        if (auto convs = self->ctx_.svc.list_conversations(a.value()); convs)
          for (auto& c : convs.value()) floor[c.id] = c.last_seq;
      asio::post(self->socket_.get_executor(),
                 [self, a = std::move(a), id_json, floor = std::move(floor)]() mutable {
                   self->floor_ = std::move(floor);
                   self->on_authenticated(std::move(a), id_json);
                 });
    });
  }

  void on_authenticated(Result<AuthContext> a, const std::string& id_json) {
    authenticating_ = false;
    if (closing_) return;
    if (!a) {
      send_error(id_json, a.error());
      for (auto& e : pending_) send_error(e.id_json, a.error());
      pending_.clear();
      begin_close(kCloseUnauthorized, "unauthorized");
      return;
    }
    auth_ = std::move(a.value());
    authed_ = true;
    arm_expiry();
    json::object d{{"user_id", auth_.user_id},
                   {"name", auth_.user_name},
                   {"device_id", auth_.device_id},
                   {"heartbeat_interval_ms", ctx_.opts.api.heartbeat_interval_ms},
                   {"heartbeat_timeout_ms", ctx_.opts.heartbeat_timeout_ms},
                   {"max_frame_bytes", ctx_.opts.max_frame_bytes},
                   {"max_body_bytes", ctx_.opts.api.max_body_bytes}};
    send(std::make_shared<const std::string>(proto::frame("ready", id_json, d)));

    std::weak_ptr<WsSession> weak = weak_from_this();
    auto exec = socket_.get_executor();
    stream_ = DeviceStream::create(
        ctx_.svc, [exec](std::function<void()> fn) { asio::post(exec, std::move(fn)); },
        [this](const std::shared_ptr<const Delivery>& d) { emit(d); },
        [weak, exec] {
          asio::post(exec, [weak] {
            if (auto s = weak.lock()) s->cut_off("too many messages held for ordering");
          });
        },
        [this] { return queued_bytes_ > low_water(); });
    // Attach first, then read positions: a message stored in between is live (held by the stream)
    // or below the last seqs read (caught up); none falls between the two.
    ctx_.hub.attach(static_cast<int>(loop_), this);
    attached_ = true;
    auto self = shared_from_this();
    ctx_.svc.run_blocking([self] {
      auto& svc = self->ctx_.svc;
      // Bound on the bus first (in a cluster), then positions and last seqs: whatever is stored
      // after this read reaches the stream live.
      self->presence_id_ = svc.device_online(self->auth_, "ws");
      self->online_.store(true);
      // Finished meanwhile: finish() found nothing to undo, so undo it here (seq_cst both sides).
      if (self->gone_.load() && self->online_.exchange(false))
        svc.device_offline(self->auth_, self->presence_id_);
      // A revocation published between the token check and the hub attach did not reach this
      // connection: look again now that it is attached (later ones arrive as notices).
      if (!svc.token_alive(self->auth_.token_hash)) {
        asio::post(self->socket_.get_executor(),
                   [self] { self->close_unauthorized("token revoked"); });
        return;
      }
      auto pos = svc.stream_positions(self->auth_);
      auto convs = svc.list_conversations(self->auth_);
      SeqMap last;
      if (convs)
        for (auto& c : convs.value()) last[c.id] = c.last_seq;
      asio::post(self->socket_.get_executor(),
                 [self, pos = std::move(pos), last = std::move(last)] {
                   if (self->stream_)
                     self->stream_->start(pos ? pos.value() : SeqMap{}, last, self->floor_);
                 });
    });
    auto waiting = std::move(pending_);
    pending_.clear();
    for (auto& e : waiting) dispatch(e);
  }

  void emit(const std::shared_ptr<const Delivery>& d) {
    ctx_.metrics.deliveries_total.add();
    send(d->wire.get(WireCache::ws_frame, [&] { return proto::frame_msg(d->msg); }));
  }

  // --- commands ---
  void on_msg(proto::Envelope& e) {
    auto req = proto::parse_send(e.data, ctx_.opts.api.max_body_bytes);
    if (!req) {
      ctx_.metrics.messages_rejected_total.add();
      return send_error(e.id_json, req.error());
    }
    // The ack is built here, on this connection's thread: the writer posts each batch's
    // completions once per thread.
    ctx_.svc.send(
        auth_, std::move(req.value()),
        [self = shared_from_this(), id = e.id_json](Result<SendAck> r) {
          if (!r) {
            self->ctx_.metrics.errors_total.add();
            return self->send(
                std::make_shared<const std::string>(proto::frame_error(id, r.error())));
          }
          self->send(std::make_shared<const std::string>(proto::frame_ack(id, *r)));
        },
        static_cast<int>(loop_));
  }

  void on_heartbeat(proto::Envelope& e) {
    auto seqs = proto::parse_seqs(e.data);
    if (!seqs) return send_error(e.id_json, seqs.error());
    auto self = shared_from_this();
    ctx_.svc.run_blocking([self, seqs = std::move(seqs.value()), id = e.id_json] {
      auto r = self->ctx_.svc.heartbeat(self->auth_, seqs);
      std::string frame =
          r ? proto::frame("heartbeat", id,
                           {{"seqs", proto::seqs_json(r.value())}, {"ts", now_ms()}})
            : proto::frame_error(id, r.error());
      asio::post(
          self->socket_.get_executor(),
          [self, f = std::make_shared<const std::string>(std::move(frame))] { self->send(f); });
    });
  }

  void on_sync(proto::Envelope& e) {
    auto req = proto::parse_sync(e.data);
    if (!req) return send_error(e.id_json, req.error());
    auto self = shared_from_this();
    ctx_.svc.run_blocking([self, req = std::move(req.value()), id = e.id_json] {
      auto page = self->ctx_.svc.sync(self->auth_, req);
      SeqMap tops;
      std::string frame;
      if (page) {
        for (auto& m : page->messages) tops[m.conversation_id] = m.seq;
        frame = proto::frame_sync(id, page.value());
      } else {
        frame = proto::frame_error(id, page.error());
      }
      asio::post(self->socket_.get_executor(),
                 [self, tops = std::move(tops),
                  f = std::make_shared<const std::string>(std::move(frame))] {
                   self->send(f);
                   // The device now has these; the live stream need not send them again.
                   if (self->stream_)
                     for (auto& [c, s] : tops) self->stream_->advance(c, s);
                 });
    });
  }

  // Group workflows (gateway/http/commands.hpp): on the work pool, answered under their name.
  void on_group_command(proto::Envelope& e) {
    auto self = shared_from_this();
    ctx_.svc.run_blocking([self, cmd = std::move(e.cmd), id = e.id_json, data = std::move(e.data)] {
      auto r = run_group_command(self->ctx_.svc, self->auth_, cmd, data);
      if (!r) self->ctx_.metrics.errors_total.add();
      auto f = std::make_shared<const std::string>(r ? proto::frame(cmd, id, r->body)
                                                     : proto::frame_error(id, r.error()));
      asio::post(self->socket_.get_executor(), [self, f] { self->send(f); });
    });
  }

  void send_error(const std::string& id_json, const Error& err) {
    ctx_.metrics.errors_total.add();
    send(std::make_shared<const std::string>(proto::frame_error(id_json, err)));
  }

  // --- the bounded send queue; queued frames go out gathered into one write ---
  struct Out {
    std::shared_ptr<const std::string> payload;  // shared by every recipient of a delivery
    int64_t voice_us = 0;                        // an audio frame: when it was relayed (mono_us)
    uint8_t header[10] = {};
    uint8_t header_len = 0;
    bool raw = false;  // the 101 response: no frame header
  };

  // Below this, catch-up reads from the store go on; above it they wait for the queue to drain.
  std::size_t low_water() const { return ctx_.opts.max_send_queue_bytes / 4; }

  void send(std::shared_ptr<const std::string> frame) { send_frame(ws::text, std::move(frame)); }

  void send_frame(ws::Opcode op, std::shared_ptr<const std::string> frame, int64_t voice_us = 0) {
    if (closing_ || dead_) return;  // a close was asked for: let the queue drain
    Out o;
    o.header_len = static_cast<uint8_t>(ws::encode_header(o.header, op, frame->size()));
    o.voice_us = voice_us;
    queued_bytes_ += frame->size() + o.header_len;
    if (voice_us) ++voice_queued_;
    o.payload = std::move(frame);
    queue_.push_back(std::move(o));
    if (queued_bytes_ > ctx_.opts.max_send_queue_bytes) {
      // A chat client that does not read is cut off rather than buffered without limit.
      // Posted: we may be inside the hub's delivery loop.
      asio::post(socket_.get_executor(),
                 [self = shared_from_this()] { self->cut_off("slow consumer"); });
      return;
    }
    schedule_write();
  }

  void enqueue_control(ws::Opcode op, std::string payload) {
    if (dead_) return;
    Out o;
    o.header_len = static_cast<uint8_t>(ws::encode_header(o.header, op, payload.size()));
    queued_bytes_ += payload.size() + o.header_len;
    o.payload = std::make_shared<const std::string>(std::move(payload));
    queue_.push_back(std::move(o));
    schedule_write();
  }

  // Connections of one network thread that have frames to write. The writes start after the
  // current handler, not inside it (Redis flushes its clients in beforeSleep for the same
  // reason): a batch delivered to this loop queues all its frames for each connection first,
  // then one handler writes every connection's frames, each in one gathered sendmsg — not one
  // posted handler per connection.
  struct FlushList {
    std::vector<std::shared_ptr<WsSession>> pending, running;
    bool posted = false;
  };
  static FlushList& flush_list() {
    static thread_local FlushList list;  // a connection is only ever touched on its own thread
    return list;
  }

  void schedule_write() {
    if (writing_ || write_scheduled_) return;
    write_scheduled_ = true;
    FlushList& fl = flush_list();
    fl.pending.push_back(shared_from_this());
    if (fl.posted) return;
    fl.posted = true;
    asio::post(socket_.get_executor(), [&fl] {
      fl.posted = false;
      std::swap(fl.pending, fl.running);
      for (auto& s : fl.running) {
        s->write_scheduled_ = false;
        s->flush();
      }
      fl.running.clear();
    });
  }

  // Writes what is queued with non-blocking sendmsg calls (the kernel copies the bytes, so the
  // queue holds nothing a write still points into), until the socket is full, then waits for it
  // to drain. After a few full writes the other connections of this thread go first.
  void flush() {
    if (writing_ || dead_) return;
    drop_late_voice();
    const int fd = socket_.native_handle();
    for (int round = 0; !queue_.empty(); ++round) {
      if (round == kMaxWritesPerFlush) return schedule_write();
      std::array<iovec, kMaxIovPerWrite> iov;
      std::size_t n = 0, bytes = 0, skip = front_sent_;
      auto add = [&](const void* p, std::size_t len) {
        if (len <= skip) {
          skip -= len;
          return;
        }
        iov[n].iov_base = const_cast<char*>(static_cast<const char*>(p) + skip);
        iov[n].iov_len = len - skip;
        bytes += len - skip;
        skip = 0;
        ++n;
      };
      for (auto& o : queue_) {
        if (n + 2 > iov.size() || bytes >= kMaxBytesPerWrite) break;
        add(o.header, o.header_len);
        add(o.payload->data(), o.payload->size());
      }
      msghdr m{};
      m.msg_iov = iov.data();
      m.msg_iovlen = n;
      ssize_t w = ::sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return wait_writable();
        return write_failed();
      }
      consume(static_cast<std::size_t>(w));
      if (stream_ && queued_bytes_ <= low_water()) stream_->resume();
      if (static_cast<std::size_t>(w) < bytes) return wait_writable();  // the socket is full
    }
    if (close_sent_) {
      // Our close frame is out: no more writes. Wait for the peer's close (or EOF) on the read
      // side; the timer cuts a peer that never answers.
      error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      if (peer_closed_) socket_.close(ignored);
    }
  }

  // `n` bytes from the front of the queue were written.
  void consume(std::size_t n) {
    n += front_sent_;
    front_sent_ = 0;
    while (!queue_.empty()) {
      const Out& o = queue_.front();
      std::size_t len = o.header_len + o.payload->size();
      if (n < len) {
        front_sent_ = n;
        return;
      }
      n -= len;
      queued_bytes_ -= len;
      if (o.voice_us) --voice_queued_;
      queue_.pop_front();
    }
  }

  void wait_writable() {
    writing_ = true;
    socket_.async_wait(tcp::socket::wait_write, [self = shared_from_this()](error_code ec) {
      self->writing_ = false;
      if (ec || self->dead_) return self->write_failed();
      self->flush();
    });
  }

  // The write failed, or the connection was finished or cut meanwhile: drop what is queued.
  void write_failed() {
    dead_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    voice_queued_ = 0;
    front_sent_ = 0;
    error_code ignored;
    socket_.close(ignored);  // the read side sees the failure and finishes
  }

  // Audio that waited past voice_max_delay_ms is worth nothing: it goes before the next write,
  // counted as late, and what is still current goes out. The oldest audio frame is the first
  // one queued, so a listener that keeps up costs one look at the front of its queue.
  void drop_late_voice() {
    if (voice_queued_ == 0) return;
    const int64_t limit = mono_us() - ctx_.opts.voice_max_delay_ms * 1000;
    auto first =
        std::find_if(queue_.begin(), queue_.end(), [](const Out& o) { return o.voice_us; });
    if (first == queue_.end() || first->voice_us >= limit) return;
    std::size_t dropped = 0;
    auto from = queue_.begin() + (front_sent_ > 0 ? 1 : 0);  // a frame begun must be finished
    auto kept = std::remove_if(from, queue_.end(), [&](const Out& o) {
      if (!o.voice_us || o.voice_us >= limit) return false;
      queued_bytes_ -= o.header_len + o.payload->size();
      ++dropped;
      return true;
    });
    queue_.erase(kept, queue_.end());
    voice_queued_ -= dropped;
    ctx_.metrics.voice_dropped_total[kVoiceDropLate].add(dropped);
  }

  // Graceful close: what is queued goes out, then a close frame.
  void begin_close(uint16_t code, const char* reason) {
    if (closing_ || !accepted_) return;
    closing_ = true;
    close_sent_ = true;
    timer_.cancel();
    arm_timer(5000);  // a peer that neither reads nor answers is cut after this
    enqueue_control(ws::close, ws::close_payload(code, reason));
  }

  // Hard cut: the peer is not reading, so a close frame would not get through either.
  void cut_off(const char* why) {
    if (dead_) return;
    spdlog::info("ws {}:{} cut off: {}", auth_.user_id, auth_.device_id, why);
    if (std::string_view(why) == "slow consumer") ctx_.metrics.slow_consumer_closes_total.add();
    dead_ = true;
    error_code ignored;
    socket_.close(ignored);
  }

  // A token that expires closes its connections, as a revoked one does.
  void arm_expiry() {
    int64_t left = auth_.expires_at_ms - now_ms();
    expiry_.expires_after(std::chrono::milliseconds(std::max<int64_t>(0, left)));
    expiry_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->finished_ || self->closing_) return;
      self->close_unauthorized("token expired");
    });
  }

  // The connection's token no longer holds (revoked or expired): say so, then close 4001.
  void close_unauthorized(const char* why) {
    ctx_.metrics.revoked_closes_total.add();
    send_error("", make_error(Errc::unauthorized, why));
    begin_close(kCloseUnauthorized, why);
  }

  void arm_timer(int64_t ms) {
    timer_.expires_after(std::chrono::milliseconds(ms));
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->on_timer();
    });
  }

  // Any frame from the client counts as a sign of life; heartbeat frames are the minimum.
  void on_timer() {
    if (finished_) return;
    if (closing_) {
      // The close did not complete in time (the peer neither read nor answered): cut.
      cut_off("close handshake timed out");
      return;
    }
    const int64_t timeout_us = ctx_.opts.heartbeat_timeout_ms * 1000;
    const int64_t now = mono_us();
    if (!authed_ && !echo_ && now - accepted_at_us_ >= timeout_us) {
      send_error("", make_error(Errc::unauthorized, "no auth frame in time"));
      return begin_close(kCloseUnauthorized, "auth timeout");
    }
    const int64_t idle = now - last_activity_us_;
    if (idle >= timeout_us) {
      ctx_.metrics.heartbeat_timeouts_total.add();
      begin_close(kCloseHeartbeatTimeout, "heartbeat timeout");
      return;
    }
    arm_timer((timeout_us - idle) / 1000 + 1);
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    dead_ = true;
    timer_.cancel();
    expiry_.cancel();
    if (attached_) ctx_.hub.detach(static_cast<int>(loop_), this);
    attached_ = false;
    if (room_open_) ctx_.opts.api.rooms->close_connection(static_cast<int>(loop_), room_conn_);
    room_open_ = false;
    gone_.store(true);
    if (online_.exchange(false)) ctx_.svc.device_offline(auth_, presence_id_);
    if (stream_) stream_->close();
    stream_.reset();
    // No write points into the queue (sendmsg copies): it can go now.
    error_code ignored;
    socket_.close(ignored);
    queue_.clear();
    queued_bytes_ = 0;
    voice_queued_ = 0;
    front_sent_ = 0;
    if (accepted_) {
      ctx_.metrics.ws_connections.add(-1);
      ctx_.untrack(this);
    }
  }

  const bool echo_;  // the conformance endpoint: messages go back as they came, no auth
  HttpServer::Impl& ctx_;
  std::size_t loop_;  // index of our network loop = our hub shard
  tcp::socket socket_;
  asio::steady_timer timer_;
  asio::steady_timer expiry_;  // fires when the token expires
  ws::FrameParser parser_;
  std::string carry_;  // bytes read but not yet framed: an incomplete header, or early bytes
  std::string pending_token_;

  AuthContext auth_;
  SeqMap floor_;  // last seqs read before `ready` (where cursorless streams start)
  std::shared_ptr<DeviceStream> stream_;
  std::deque<Out> queue_;
  std::size_t front_sent_ = 0;            // bytes of queue_.front() already written
  std::size_t voice_queued_ = 0;          // audio frames in queue_
  std::vector<proto::Envelope> pending_;  // commands that arrived while authenticating
  std::size_t queued_bytes_ = 0;          // bytes in queue_, the front's written part included
  int64_t accepted_at_us_ = 0;
  int64_t last_activity_us_ = 0;  // mono_us of the last bytes received
  bool accepted_ = false;
  bool authenticating_ = false;
  bool authed_ = false;
  // Voice rooms: this connection's id there, and whether it is known there yet.
  const int64_t room_conn_ = ctx_.opts.api.rooms ? ctx_.opts.api.rooms->new_connection_id() : 0;
  bool room_open_ = false;
  bool attached_ = false;
  // device_online was called (on the work pool) and device_offline is owed: set from there,
  // read here at finish.
  std::atomic<bool> online_{false};
  int64_t presence_id_ = 0;        // device_online's answer: written before online_ is set
  std::atomic<bool> gone_{false};  // finish() ran
  bool writing_ = false;           // waiting for the socket to take more
  bool write_scheduled_ = false;   // on this thread's flush list
  bool closing_ = false;           // a close was asked for; nothing but the close frame is queued
  bool close_sent_ = false;        // our close frame is queued or written
  bool peer_closed_ = false;       // the peer sent its close frame (or broke the protocol)
  bool dead_ = false;              // the socket failed or was cut; drop further sends
  bool finished_ = false;
};

}  // namespace

void start_ws_session(HttpServer::Impl& ctx, std::size_t loop, tcp::socket socket,
                      const std::string& client_key, std::string early, std::string token,
                      bool echo) {
  std::make_shared<WsSession>(ctx, loop, std::move(socket), std::move(token), echo)
      ->run(client_key, std::move(early));
}

}  // namespace converge
