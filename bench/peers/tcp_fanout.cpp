// The ceiling: a bare TCP fan-out server with no protocol beyond length-prefixed frames.
// Frame [u32 len]["J"<group>] joins a group; ["P"<bytes>] goes to every member of the sender's
// group, the sender included; a frame whose first byte is 1 (a voice frame: the bytes Converge
// would relay, bench/voice.hpp) goes as it is to every other member of the sender's group,
// never back to the sender. One io_context per core; each thread owns its connections and its
// part of each group, and a publish is posted once per thread with one shared buffer: the same
// fan-out shape as Converge, without parsing, storage or JSON.
#include <atomic>
#include <boost/asio.hpp>
#include <cstdio>
#include <deque>
#include <memory>
#include <thread>
#include <unordered_map>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Buf = std::shared_ptr<const std::string>;

struct Loop;
struct Session;
std::vector<std::unique_ptr<Loop>> loops;

struct Loop {
  asio::io_context io{1};
  std::unordered_map<std::string, std::vector<Session*>> groups;
};

struct Session : std::enable_shared_from_this<Session> {
  Session(Loop& l, tcp::socket s) : loop(l), sock(std::move(s)) {}
  static inline std::atomic<uint64_t> next_id{0};
  const uint64_t id = ++next_id;  // told apart from other sessions on any thread
  Loop& loop;
  tcp::socket sock;
  std::string group;
  std::vector<char> in = std::vector<char>(64 << 10);
  std::size_t len = 0;
  std::deque<Buf> out;
  std::vector<asio::const_buffer> bufs;
  std::size_t inflight = 0;
  bool writing = false;

  void read() {
    sock.async_read_some(asio::buffer(in.data() + len, in.size() - len),
                         [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                           if (ec) return self->leave();
                           self->len += n;
                           self->frames();
                           self->read();
                         });
  }
  void frames() {
    std::size_t off = 0;
    while (len - off >= 4) {
      auto* p = reinterpret_cast<const uint8_t*>(in.data() + off);
      uint32_t n = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
      if (len - off < 4 + n) {
        if (4 + n > in.size()) in.resize(4 + n);
        break;
      }
      std::string_view f(in.data() + off + 4, n);
      if (f.starts_with("J")) {
        group = std::string(f.substr(1));
        loop.groups[group].push_back(this);
      } else if (!f.empty() && f[0] == '\x01') {
        auto buf = std::make_shared<const std::string>(in.data() + off, 4 + n);
        for (auto& l : loops)
          asio::post(l->io, [l = l.get(), g = group, buf, from = id] {
            if (auto it = l->groups.find(g); it != l->groups.end())
              for (auto* s : it->second)
                if (s->id != from) s->send(buf);
          });
      } else if (f.starts_with("P")) {
        auto buf = std::make_shared<const std::string>(in.data() + off, 4 + n);  // re-send as is
        for (auto& l : loops)
          asio::post(l->io, [l = l.get(), g = group, buf] {
            if (auto it = l->groups.find(g); it != l->groups.end())
              for (auto* s : it->second) s->send(buf);
          });
      }
      off += 4 + n;
    }
    std::memmove(in.data(), in.data() + off, len - off);
    len -= off;
  }
  void send(const Buf& b) {
    out.push_back(b);
    if (!writing) write();
  }
  void write() {
    writing = true;
    bufs.clear();
    for (auto& b : out) {
      bufs.emplace_back(b->data(), b->size());
      if (++inflight == 64) break;
    }
    asio::async_write(sock, bufs,
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->writing = false;
                        if (ec) return;
                        for (; self->inflight; --self->inflight) self->out.pop_front();
                        if (!self->out.empty()) self->write();
                      });
  }
  void leave() {
    auto& v = loop.groups[group];
    std::erase(v, this);
  }
};

int main(int argc, char** argv) {
  unsigned short port = argc > 1 ? static_cast<unsigned short>(std::atoi(argv[1])) : 0;
  unsigned n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) loops.push_back(std::make_unique<Loop>());
  tcp::acceptor acc(loops[0]->io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  std::printf("%u\n", acc.local_endpoint().port());
  std::fflush(stdout);
  std::size_t next = 0;
  std::function<void()> accept = [&] {
    Loop& l = *loops[next++ % loops.size()];
    acc.async_accept(l.io, [&, lp = &l](boost::system::error_code ec, tcp::socket s) {
      if (!ec) {
        s.set_option(tcp::no_delay(true));
        asio::post(lp->io, [lp, sp = std::make_shared<tcp::socket>(std::move(s))] {
          std::make_shared<Session>(*lp, std::move(*sp))->read();
        });
      }
      accept();
    });
  };
  accept();
  std::vector<std::thread> threads;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& l : loops) guards.emplace_back(l->io.get_executor());
  for (std::size_t i = 1; i < loops.size(); ++i)
    threads.emplace_back([&, i] { loops[i]->io.run(); });
  loops[0]->io.run();
}
