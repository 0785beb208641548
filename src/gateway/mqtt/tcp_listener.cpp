// MQTT over TCP: the acceptor and one TcpLink per connection (the transport layer of
// broker.hpp). Bytes read go to the broker's Client as they come; what the broker writes is
// queued and leaves in gathered writes, as the WebSocket session's frames do.
#include "gateway/mqtt/tcp_listener.hpp"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/clock.hpp"
#include "base/metrics.hpp"
#include "gateway/mqtt/broker.hpp"
#include "net/io_pool.hpp"

namespace converge::mqtt {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

constexpr std::size_t kReadChunk = 16 << 10;          // bytes asked of the socket per read
constexpr int kReadsPerWakeup = 4;                    // then back to the loop (fairness)
constexpr std::size_t kMaxBuffersPerWrite = 64;       // queued writes gathered into one
constexpr std::size_t kMaxBytesPerWrite = 256 << 10;  // bytes gathered into one write
constexpr int64_t kLingerMs = 5000;  // after close(): time for the peer to read and hang up
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);  // out of descriptors

class TcpLink;

}  // namespace

struct TcpListener::Impl {
  Impl(TcpListenerOptions o, AcceptFn a, IoPool& i, Metrics& m)
      : opts(o), accept(std::move(a)), io(i), metrics(m) {}

  TcpListenerOptions opts;
  AcceptFn accept;
  IoPool& io;
  Metrics& metrics;
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::steady_timer> backoff;  // accept paused while out of descriptors
  std::atomic<bool> stopping{false};
  bool out_of_fds = false;  // accept paused (logged once per episode); acceptor's thread only

  // Open connections, to close them at shutdown; touched at connect and close only.
  std::mutex live_mu;
  std::unordered_map<const void*, std::weak_ptr<TcpLink>> live;
  std::size_t live_count() {
    std::lock_guard lk(live_mu);
    return live.size();
  }
};

namespace {

std::string endpoint_string(const tcp::endpoint& ep) {
  auto a = ep.address();
  std::string s = a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  return s + ":" + std::to_string(ep.port());
}

// One TCP connection. Every member is touched on its loop's thread only (Link's contract),
// but post(), which any thread may call.
class TcpLink final : public Link, public std::enable_shared_from_this<TcpLink> {
 public:
  TcpLink(std::shared_ptr<TcpListener::Impl> ctx, tcp::socket socket)
      : ctx_(std::move(ctx)),
        socket_(std::move(socket)),
        exec_(socket_.get_executor()),
        timer_(exec_) {}

  ~TcpLink() override {
    std::lock_guard lk(ctx_->live_mu);
    ctx_->live.erase(this);
  }

  void start() {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    remote_ = ec ? std::string("?") : endpoint_string(ep);
    {
      std::lock_guard lk(ctx_->live_mu);
      ctx_->live.emplace(this, weak_from_this());
    }
    accepted_at_us_ = last_activity_us_ = mono_us();
    client_ = ctx_->accept(shared_from_this());
    if (!client_) return cut("refused by the broker");
    if (!finished_ && !close_requested_) arm_timer_for_state();
    socket_.non_blocking(true, ec);
    // The kernel's receive time of what is read: the order the broker applies this
    // connection's packets in against others' (Client::on_bytes). Without it (refused), the
    // time of the read.
    int on = 1;
    stamped_ =
        ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) == 0;
    wait_readable();
  }

  // --- Link ---
  void post(std::function<void()> fn) override { asio::post(exec_, std::move(fn)); }

  void write(std::shared_ptr<const std::string> bytes) override {
    if (dead_ || close_requested_ || !bytes || bytes->empty()) return;
    queued_bytes_ += bytes->size();
    queue_.push_back(std::move(bytes));
    if (queued_bytes_ > ctx_->opts.max_queued_bytes) {
      // The broker's own cap did not stop it (or the peer reads nothing at all): cut rather
      // than buffer without bound. Posted: the broker may be mid-delivery to many clients.
      ctx_->metrics.slow_consumer_closes_total.add();
      asio::post(exec_, [self = shared_from_this()] { self->cut("slow consumer"); });
      return;
    }
    schedule_write();
  }

  std::size_t queued_bytes() const override { return queued_bytes_; }

  void close() override {
    if (dead_ || close_requested_) return;
    close_requested_ = true;
    close_deadline_us_ = mono_us() + kLingerMs * 1000;
    arm_timer_for_state();
    if (!writing_ && !write_scheduled_ && queue_.empty()) shutdown_send();
  }

  void set_idle_timeout(std::chrono::milliseconds t) override {
    connected_ = true;
    idle_us_ = std::max<int64_t>(0, t.count()) * 1000;
    last_activity_us_ = mono_us();
    if (!close_requested_ && !dead_) {
      if (idle_us_ > 0)
        arm_timer_for_state();
      else
        timer_.cancel();
    }
  }

  void alive() override { last_activity_us_ = mono_us(); }

  std::string remote_address() const override { return remote_; }
  const char* transport() const override { return "tcp"; }

  // Shutdown of the listener: as if the broker had asked.
  void close_from_listener() { close(); }
  void cut_from_listener() { cut("node stopping"); }

 private:
  // --- reading: an idle connection holds no read buffer (it waits for readability, then reads
  // into its thread's buffer, as the WebSocket session does) ---
  void wait_readable() {
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](error_code ec) { self->on_readable(ec); });
  }

  void on_readable(error_code ec) {
    if (ec || dead_) return finish();
    thread_local std::array<char, kReadChunk> buf;
    for (int i = 0; i < kReadsPerWakeup; ++i) {
      int64_t arrived_ns = 0;
      std::size_t n = read_stamped(buf, arrived_ns, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;
      if (ec) return finish();  // EOF included
      // After close(): what the peer still sends is read (so that closing does not reset the
      // connection under the bytes we flushed) and dropped.
      if (!close_requested_) {
        client_->on_bytes(std::string_view(buf.data(), n), arrived_ns);
        if (dead_) return finish();
      }
      if (n < buf.size()) break;
    }
    wait_readable();
  }

  // One non-blocking read with the kernel's receive time of its last byte (`arrived_ns`; the
  // time of the read when the kernel gives none). EOF: asio::error::eof.
  std::size_t read_stamped(std::array<char, kReadChunk>& buf, int64_t& arrived_ns, error_code& ec) {
    ec.clear();
    if (!stamped_) {
      std::size_t n = socket_.read_some(asio::buffer(buf), ec);
      arrived_ns = arrival_now();
      return n;
    }
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do {
      n = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      ec = error_code(errno, boost::system::system_category());
      if (errno == EAGAIN || errno == EWOULDBLOCK) ec = asio::error::would_block;
      return 0;
    }
    if (n == 0) {
      ec = asio::error::eof;
      return 0;
    }
    arrived_ns = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
          c->cmsg_len >= CMSG_LEN(sizeof(timespec))) {
        timespec ts;
        std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
        arrived_ns = static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
      }
    }
    if (arrived_ns == 0) arrived_ns = arrival_now();
    return static_cast<std::size_t>(n);
  }

  // --- writing: queued buffers leave together, after the current handler ---
  void schedule_write() {
    if (writing_ || write_scheduled_) return;
    write_scheduled_ = true;
    asio::post(exec_, [self = shared_from_this()] {
      self->write_scheduled_ = false;
      if (!self->writing_) self->do_write();
    });
  }

  void do_write() {
    if (dead_) return;
    if (queue_.empty()) {
      if (close_requested_) shutdown_send();
      return;
    }
    writing_ = true;
    bufs_.clear();
    std::size_t bytes = 0;
    for (auto& b : queue_) {
      if (bufs_.size() >= kMaxBuffersPerWrite || (bytes > 0 && bytes >= kMaxBytesPerWrite)) break;
      bufs_.emplace_back(b->data(), b->size());
      bytes += b->size();
    }
    asio::async_write(socket_, bufs_, [self = shared_from_this()](error_code ec, std::size_t) {
      self->on_write(ec);
    });
  }

  void on_write(error_code ec) {
    writing_ = false;
    if (ec || dead_) {
      // Failed, or cut while in flight: drop the queue here, where no write points into it.
      dead_ = true;
      drop_queue();
      error_code ignored;
      socket_.close(ignored);  // the read side sees it and finishes
      return;
    }
    for (std::size_t i = bufs_.size(); i > 0; --i) {
      queued_bytes_ -= queue_.front()->size();
      queue_.pop_front();
    }
    bufs_.clear();
    do_write();
  }

  void drop_queue() {
    queue_.clear();
    bufs_.clear();
    queued_bytes_ = 0;
  }

  // Everything asked for is written: FIN. The read side then waits for the peer's FIN (or the
  // linger deadline).
  void shutdown_send() {
    if (shut_) return;
    shut_ = true;
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
  }

  // --- the one timer: connect deadline, then keepalive (idle) deadline, then linger ---
  int64_t deadline_us() const {
    if (close_requested_) return close_deadline_us_;
    if (!connected_) return accepted_at_us_ + ctx_->opts.connect_timeout.count() * 1000;
    if (idle_us_ > 0) return last_activity_us_ + idle_us_;
    return 0;  // none
  }

  void arm_timer_for_state() {
    int64_t d = deadline_us();
    if (d == 0) return;
    int64_t left = std::max<int64_t>(0, d - mono_us());
    // expires_after cancels a wait in progress: at most one is ever pending.
    timer_.expires_after(std::chrono::microseconds(left) + std::chrono::milliseconds(1));
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->on_timer();
    });
  }

  // Fired: look at the state now (reads may have moved the deadline since the wait began).
  void on_timer() {
    if (finished_ || dead_) return;
    int64_t d = deadline_us();
    if (d == 0) return;
    if (mono_us() < d) return arm_timer_for_state();
    if (close_requested_) return cut("close timed out");
    if (!connected_) return cut("no CONNECT in time");
    ctx_->metrics.heartbeat_timeouts_total.add();
    cut("keepalive timeout");
  }

  // Hard close: the socket goes now; the pending read completes with an error and finishes.
  void cut(const char* why) {
    if (dead_) return;
    spdlog::debug("mqtt tcp {}: closed: {}", remote_, why);
    dead_ = true;
    timer_.cancel();
    error_code ignored;
    socket_.close(ignored);
    if (!writing_) drop_queue();
    if (!client_) finish();  // refused at start: no read was ever started
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    dead_ = true;
    timer_.cancel();
    error_code ignored;
    socket_.close(ignored);
    if (!writing_) drop_queue();  // else on_write drops it
    {
      std::lock_guard lk(ctx_->live_mu);
      ctx_->live.erase(this);
    }
    // The Client holds this Link; letting go of it here breaks the cycle.
    if (auto c = std::move(client_)) c->on_closed();
  }

  std::shared_ptr<TcpListener::Impl> ctx_;  // shared: a handler may outlive the listener
  tcp::socket socket_;
  const tcp::socket::executor_type exec_;
  asio::steady_timer timer_;
  std::shared_ptr<Client> client_;
  std::string remote_;
  std::deque<std::shared_ptr<const std::string>> queue_;  // front: in the write in flight
  std::vector<asio::const_buffer> bufs_;                  // the write in flight
  std::size_t queued_bytes_ = 0;                          // bytes in queue_
  int64_t accepted_at_us_ = 0;
  int64_t last_activity_us_ = 0;
  int64_t idle_us_ = 0;
  int64_t close_deadline_us_ = 0;
  bool connected_ = false;  // set_idle_timeout was called: the connect deadline is over
  bool stamped_ = false;    // SO_TIMESTAMPNS is on: reads carry the receive time
  bool writing_ = false;
  bool write_scheduled_ = false;
  bool close_requested_ = false;  // close(): flush, FIN, then wait for the peer's FIN
  bool shut_ = false;             // FIN sent
  bool dead_ = false;             // socket closed or failed: nothing more is written
  bool finished_ = false;         // on_closed was called
};

bool out_of_descriptors(const error_code& ec) {
  return ec == asio::error::no_descriptors ||                         // EMFILE
         ec == boost::system::errc::too_many_files_open_in_system ||  // ENFILE
         ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}

void do_accept(const std::shared_ptr<TcpListener::Impl>& ctx) {
  std::size_t loop = ctx->io.next_index();
  ctx->acceptor->async_accept(ctx->io.loop(loop), [ctx, loop](error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || ctx->stopping) return;
    if (!ec) {
      if (ctx->out_of_fds) {
        ctx->out_of_fds = false;
        spdlog::info("mqtt accept: accepting again");
      }
      ctx->metrics.connections_total.add();
      error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      // The socket belongs to `loop`: the link starts there.
      asio::post(ctx->io.loop(loop),
                 [ctx, s = std::make_shared<tcp::socket>(std::move(socket))]() mutable {
                   if (ctx->stopping) return;
                   std::make_shared<TcpLink>(ctx, std::move(*s))->start();
                 });
    } else if (out_of_descriptors(ec)) {
      // Retrying at once would spin: the pending connection stays in the backlog until a
      // descriptor frees up. Pause, then accept again.
      if (!ctx->out_of_fds)
        spdlog::warn("mqtt accept: {}: accepting every {} ms until descriptors free up",
                     ec.message(), kAcceptBackoff.count());
      ctx->out_of_fds = true;
      ctx->backoff->expires_after(kAcceptBackoff);
      ctx->backoff->async_wait([ctx](error_code e) {
        if (!e && !ctx->stopping) do_accept(ctx);
      });
      return;
    } else {
      spdlog::warn("mqtt accept: {}", ec.message());
    }
    do_accept(ctx);
  });
}

}  // namespace

TcpListener::TcpListener(TcpListenerOptions opts, AcceptFn accept, IoPool& io, Metrics& metrics)
    : impl_(std::make_shared<Impl>(opts, std::move(accept), io, metrics)) {}

TcpListener::~TcpListener() {
  impl_->stopping = true;
}

Status TcpListener::listen(const std::string& host, uint16_t port) {
  error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return make_error(Errc::bad_request, "mqtt_listen: bad address " + host);
  tcp::endpoint ep(addr, port);
  auto& a = impl_->acceptor.emplace(impl_->io.loop(0));
  impl_->backoff.emplace(impl_->io.loop(0));
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return make_error(Errc::unavailable,
                      "mqtt_listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  do_accept(impl_);
  return ok_status();
}

uint16_t TcpListener::port() const {
  if (!impl_->acceptor) return 0;
  error_code ec;
  auto ep = impl_->acceptor->local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void TcpListener::stop_accepting() {
  if (impl_->stopping.exchange(true) || !impl_->acceptor) return;
  auto ctx = impl_;
  asio::post(impl_->acceptor->get_executor(), [ctx] {
    error_code ec;
    ctx->acceptor->close(ec);
    ctx->backoff->cancel();
  });
}

void TcpListener::shutdown(int64_t grace_ms) {
  stop_accepting();
  // Asks every open link, on its own thread, to close (`graceful`) or be cut.
  auto each = [this](bool graceful) {
    std::vector<std::weak_ptr<TcpLink>> links;
    {
      std::lock_guard lk(impl_->live_mu);
      for (auto& [_, w] : impl_->live) links.push_back(w);
    }
    for (auto& w : links)
      if (auto l = w.lock())
        l->post([w, graceful] {
          if (auto s = w.lock()) graceful ? s->close_from_listener() : s->cut_from_listener();
        });
  };
  each(true);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  while (impl_->live_count() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (auto n = impl_->live_count(); n > 0) {
    spdlog::warn("{} MQTT connections still open at stop: cut", n);
    each(false);
    auto cut_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (impl_->live_count() > 0 && std::chrono::steady_clock::now() < cut_deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace converge::mqtt
