#include "voice.hpp"

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "base/crypto.hpp"
#include "client/http.hpp"
#include "histogram.hpp"
#include "proc_stats.hpp"
#include "transport.hpp"

namespace converge::bench {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

uint64_t now_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

constexpr uint8_t kAudio = 1;
constexpr std::size_t kDownHeader = 1 + 4 + 4 + 2;  // kind, room, sender, seq
constexpr std::size_t kStamp = 8 + 4 + 4;           // send ns, speaker connection, frame number

void put16(std::string& s, std::size_t at, uint16_t v) {
  s[at] = static_cast<char>(v >> 8);
  s[at + 1] = static_cast<char>(v);
}
void put32(std::string& s, std::size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + static_cast<std::size_t>(i)] = static_cast<char>(v >> (24 - 8 * i));
}
uint32_t get32(const char* p) {
  auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}

enum class Text { other, ready, joined, error };

// What differs between Converge's voice rooms and the bare TCP ceiling.
class VoiceTarget {
 public:
  virtual ~VoiceTarget() = default;
  // Blocking set-up of `rooms` rooms of `members` (connection c is member c % members of room
  // c / members).
  virtual std::string prepare(int rooms, int members) = 0;
  virtual std::shared_ptr<Conn> connect(asio::io_context& io, int conn, const std::string& local,
                                        Conn::Handlers h) = 0;
  virtual std::vector<std::string> on_open(int conn) = 0;  // frames sent once connected
  virtual bool joined_on_open() const = 0;                 // else joined at Text::joined
  virtual std::string join(int conn) = 0;                  // sent at Text::ready
  virtual Text parse(std::string_view text) const = 0;
  // The room's id as it comes back in relayed frames.
  virtual uint32_t room_id(int room) const = 0;
  // An audio frame up: `payload` after the header.
  virtual std::string frame(int conn, uint16_t seq, std::size_t payload) const = 0;
  virtual std::size_t payload_at() const = 0;  // where the payload starts in frame()
  virtual std::string heartbeat() const { return {}; }
  // Counters of the server's own (/metrics), or none.
  virtual std::map<std::string, double> metrics() const { return {}; }
};

class ConvergeVoice final : public VoiceTarget {
 public:
  ConvergeVoice(std::string host, uint16_t port) : host_(std::move(host)), port_(port), run_(random_hex(3)) {}

  std::string prepare(int rooms, int members) override {
    members_ = members;
    // A user is a member of one room per connection: user k is member k of every room, so
    // M users serve any number of rooms.
    for (int u = 0; u < members; ++u) {
      std::string id = "v" + run_ + "_" + std::to_string(u);
      json::object reg{{"user_id", id}, {"password", "bench"}};
      auto r = client::http_call(host_, port_, "POST", "/api/v1/users", json::serialize(reg));
      if (!r || r->status != 201) return "register " + id + ": " + (r ? r->body : r.error().message);
      json::object login{{"user_id", id}, {"password", "bench"}, {"device_id", "bench"}};
      auto l = client::http_call(host_, port_, "POST", "/api/v1/login", json::serialize(login));
      if (!l || l->status != 200) return "login " + id + ": " + (l ? l->body : l.error().message);
      tokens_.emplace_back(json::parse(l->body).at("token").as_string());
    }
    for (int r = 0; r < rooms; ++r) {
      json::object body{{"name", "bench " + run_ + " " + std::to_string(r)},
                        {"max_members", members}};
      auto c = client::http_call(host_, port_, "POST", "/api/v1/rooms", json::serialize(body),
                                 tokens_.front());
      if (!c || c->status != 201) return "create room: " + (c ? c->body : c.error().message);
      ids_.push_back(static_cast<uint32_t>(json::parse(c->body).at("room_id").to_number<int64_t>()));
    }
    return {};
  }
  std::shared_ptr<Conn> connect(asio::io_context& io, int conn, const std::string& local,
                                Conn::Handlers h) override {
    return make_ws_conn(io, host_, port_,
                        "/ws?token=" + tokens_[static_cast<std::size_t>(conn % members_)], local,
                        std::move(h));
  }
  std::vector<std::string> on_open(int) override { return {}; }
  bool joined_on_open() const override { return false; }
  std::string join(int conn) override {
    return R"({"cmd":"room.join","id":1,"data":{"room_id":)" +
           std::to_string(ids_[static_cast<std::size_t>(conn / members_)]) + "}}";
  }
  Text parse(std::string_view f) const override {
    if (f.starts_with(R"({"cmd":"room.join")")) return Text::joined;
    if (f.starts_with(R"({"cmd":"ready")")) return Text::ready;
    if (f.starts_with(R"({"cmd":"error")")) return Text::error;
    return Text::other;  // room.joined, room.speaking, ...
  }
  uint32_t room_id(int room) const override { return ids_[static_cast<std::size_t>(room)]; }
  std::string frame(int conn, uint16_t seq, std::size_t payload) const override {
    std::string f(7 + payload, 'x');
    f[0] = static_cast<char>(kAudio);
    put32(f, 1, ids_[static_cast<std::size_t>(conn / members_)]);
    put16(f, 5, seq);
    return f;
  }
  std::size_t payload_at() const override { return 7; }
  std::string heartbeat() const override { return R"({"cmd":"heartbeat","data":{}})"; }
  std::map<std::string, double> metrics() const override {
    std::map<std::string, double> out;
    auto r = client::http_call(host_, port_, "GET", "/metrics", "");
    if (!r || r->status != 200) return out;
    std::string_view t = r->body;
    while (!t.empty()) {
      auto nl = t.find('\n');
      auto line = t.substr(0, nl);
      t = nl == std::string_view::npos ? std::string_view{} : t.substr(nl + 1);
      if (!line.starts_with("converge_voice_")) continue;
      auto sp = line.rfind(' ');
      if (sp == std::string_view::npos) continue;
      double v = 0;
      std::from_chars(line.data() + sp + 1, line.data() + line.size(), v);
      out[std::string(line.substr(0, sp))] = v;
    }
    return out;
  }

 private:
  std::string host_;
  uint16_t port_;
  std::string run_;
  int members_ = 1;
  std::vector<std::string> tokens_;
  std::vector<uint32_t> ids_;
};

class TcpVoice final : public VoiceTarget {
 public:
  TcpVoice(std::string host, uint16_t port) : host_(std::move(host)), port_(port) {}
  std::string prepare(int, int members) override {
    members_ = members;
    return {};
  }
  std::shared_ptr<Conn> connect(asio::io_context& io, int, const std::string& local,
                                Conn::Handlers h) override {
    return make_tcp_conn(io, host_, port_, local, std::move(h));
  }
  std::vector<std::string> on_open(int conn) override {
    return {"Jv" + std::to_string(conn / members_)};
  }
  bool joined_on_open() const override { return true; }
  std::string join(int) override { return {}; }
  Text parse(std::string_view) const override { return Text::other; }
  uint32_t room_id(int room) const override { return static_cast<uint32_t>(room); }
  // The bytes Converge would relay (the sender stamped by the generator): the server sends them
  // on as they are.
  std::string frame(int conn, uint16_t seq, std::size_t payload) const override {
    std::string f(kDownHeader + payload, 'x');
    f[0] = static_cast<char>(kAudio);
    put32(f, 1, static_cast<uint32_t>(conn / members_));
    put32(f, 5, static_cast<uint32_t>(conn % members_));
    put16(f, 9, seq);
    return f;
  }
  std::size_t payload_at() const override { return kDownHeader; }

 private:
  std::string host_;
  uint16_t port_;
  int members_ = 1;
};

struct Worker;

struct Member {
  int index = 0, room = 0, member = 0;
  bool speaker = false, joined = false;
  uint32_t room_id = 0;
  std::shared_ptr<Conn> conn;
  Worker* w = nullptr;
  // Speakers: the schedule and what was sent while measuring.
  uint64_t next_due_ns = 0;
  uint32_t frame_no = 0;
  uint64_t sent_measured = 0;
  // Listeners: what came in (measured: by its send time), and the last frame number from each
  // speaker of the room (order and duplicates).
  uint64_t received = 0, received_measured = 0;
  std::vector<int64_t> last_from;
};

struct Shared {
  VoiceOptions o;
  VoiceTarget* target = nullptr;
  std::atomic<bool> publishing{false};
  std::atomic<uint64_t> measure_start_ns{UINT64_MAX}, measure_end_ns{UINT64_MAX};
  uint64_t period_ns = 20'000'000;
};

struct alignas(64) Counters {
  std::atomic<uint64_t> joined{0}, closed{0}, errors{0}, sent{0}, received{0};
  std::atomic<uint64_t> arrived_measured{0};  // frames that arrived while measuring, any send time
};

struct Worker {
  Shared* sh = nullptr;
  asio::io_context io{1};
  Counters c;
  Histogram latency_us;
  std::vector<Member*> members, speakers;
  std::unique_ptr<asio::steady_timer> tick;
  uint64_t misrouted = 0, echoed = 0, out_of_order = 0, short_frames = 0, late_resets = 0;
  uint64_t next_heartbeat_ns = 0;

  bool in_window(uint64_t t) const {
    return t >= sh->measure_start_ns.load(std::memory_order_relaxed) &&
           t < sh->measure_end_ns.load(std::memory_order_relaxed);
  }

  void on_message(Member& m, std::string_view f) {
    if (!f.empty() && static_cast<uint8_t>(f[0]) == kAudio) return on_audio(m, f);
    switch (sh->target->parse(f)) {
      case Text::ready:
        m.conn->send(sh->target->join(m.index));
        break;
      case Text::joined:
        if (!m.joined) {
          m.joined = true;
          c.joined.fetch_add(1, std::memory_order_relaxed);
        }
        break;
      case Text::error: {
        static std::atomic<int> shown{0};
        if (shown.fetch_add(1) < 5)
          std::fprintf(stderr, "[voice] conn %d: %.*s\n", m.index, static_cast<int>(f.size()),
                       f.data());
        c.errors.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      case Text::other:
        break;
    }
  }

  void on_audio(Member& m, std::string_view f) {
    const uint64_t t = now_ns();
    if (f.size() < kDownHeader + kStamp) {
      ++short_frames;
      return;
    }
    ++m.received;
    c.received.fetch_add(1, std::memory_order_relaxed);
    if (in_window(t)) c.arrived_measured.fetch_add(1, std::memory_order_relaxed);
    uint64_t sent = 0;
    uint32_t from = 0, no = 0;
    std::memcpy(&sent, f.data() + kDownHeader, 8);
    std::memcpy(&from, f.data() + kDownHeader + 8, 4);
    std::memcpy(&no, f.data() + kDownHeader + 12, 4);
    if (get32(f.data() + 1) != m.room_id) ++misrouted;
    if (from == static_cast<uint32_t>(m.index)) ++echoed;
    // Speakers are members 0..S-1 of the room.
    const auto slot = static_cast<std::size_t>(from % static_cast<uint32_t>(sh->o.members));
    if (slot < m.last_from.size()) {
      if (static_cast<int64_t>(no) <= m.last_from[slot]) ++out_of_order;
      m.last_from[slot] = no;
    }
    if (in_window(sent)) {
      ++m.received_measured;
      latency_us.record((t - sent) / 1000);
    }
  }

  void send_frame(Member& s) {
    const uint64_t t = now_ns();
    std::string f = sh->target->frame(s.index, static_cast<uint16_t>(s.frame_no),
                                      static_cast<std::size_t>(sh->o.size));
    const std::size_t at = sh->target->payload_at();
    const auto idx = static_cast<uint32_t>(s.index);
    std::memcpy(f.data() + at, &t, 8);
    std::memcpy(f.data() + at + 8, &idx, 4);
    std::memcpy(f.data() + at + 12, &s.frame_no, 4);
    s.conn->send_binary(f);
    ++s.frame_no;
    c.sent.fetch_add(1, std::memory_order_relaxed);
    if (in_window(t)) ++s.sent_measured;
  }

  // Every millisecond, each speaker sends what is due on its own 20 ms schedule (their phases
  // spread evenly over the period). A speaker more than 5 periods behind (the generator starved
  // of CPU) starts its schedule again from now rather than sending a burst.
  void start_ticker() {
    tick = std::make_unique<asio::steady_timer>(io);
    next_heartbeat_ns = now_ns() + 15'000'000'000ULL;
    arm();
  }
  void arm() {
    tick->expires_after(std::chrono::milliseconds(1));
    tick->async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      const uint64_t now = now_ns();
      if (sh->publishing.load(std::memory_order_relaxed))
        for (auto* s : speakers) {
          if (!s->joined) continue;
          if (now > s->next_due_ns + 5 * sh->period_ns) {
            ++late_resets;
            s->next_due_ns = now;
          }
          while (s->next_due_ns <= now) {
            send_frame(*s);
            s->next_due_ns += sh->period_ns;
          }
        }
      // Listeners never send: a heartbeat now and then keeps them inside heartbeat_timeout_ms.
      if (now >= next_heartbeat_ns) {
        next_heartbeat_ns = now + 15'000'000'000ULL;
        if (auto hb = sh->target->heartbeat(); !hb.empty())
          for (auto* m : members)
            if (m->conn) m->conn->send(hb);
      }
      arm();
    });
  }
};

json::object quantiles(const Histogram& h) {
  return json::object{{"p50", h.quantile(0.5)},  {"p90", h.quantile(0.9)},
                      {"p99", h.quantile(0.99)}, {"p999", h.quantile(0.999)},
                      {"max", h.max()},          {"count", h.count()}};
}

}  // namespace

json::object run_voice(const VoiceOptions& o) {
  std::unique_ptr<VoiceTarget> target;
  if (o.target == "converge")
    target = std::make_unique<ConvergeVoice>(o.host, o.port);
  else if (o.target == "tcp")
    target = std::make_unique<TcpVoice>(o.host, o.port);
  else
    return {{"error", "--scenario voice: target is converge or tcp"}};
  if (o.rooms < 1 || o.members < 2 || o.speakers < 1 || o.speakers > o.members || o.fps <= 0 ||
      o.size < static_cast<int>(kStamp))
    return {{"error", "voice: rooms >= 1, members >= 2, 1 <= speakers <= members, fps > 0, size >= " +
                          std::to_string(kStamp)}};
  Shared sh;
  sh.o = o;
  sh.target = target.get();
  sh.period_ns = static_cast<uint64_t>(1e9 / o.fps);
  const int conns = o.rooms * o.members;

  auto t_prep = now_ns();
  if (auto err = target->prepare(o.rooms, o.members); !err.empty()) return {{"error", "prepare: " + err}};
  const double prepare_s = static_cast<double>(now_ns() - t_prep) / 1e9;

  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < std::max(1, o.threads); ++i) {
    workers.push_back(std::make_unique<Worker>());
    workers.back()->sh = &sh;
  }
  std::vector<std::unique_ptr<Member>> members(static_cast<std::size_t>(conns));
  const int total_speakers = o.rooms * o.speakers;
  for (int i = 0; i < conns; ++i) {
    auto m = std::make_unique<Member>();
    m->index = i;
    m->room = i / o.members;
    m->member = i % o.members;
    m->room_id = target->room_id(m->room);
    m->speaker = m->member < o.speakers;
    m->last_from.assign(static_cast<std::size_t>(o.speakers), -1);
    m->w = workers[static_cast<std::size_t>(i) % workers.size()].get();
    m->w->members.push_back(m.get());
    if (m->speaker) m->w->speakers.push_back(m.get());
    members[static_cast<std::size_t>(i)] = std::move(m);
  }
  std::vector<std::thread> threads;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& w : workers) guards.emplace_back(w->io.get_executor());
  for (auto& w : workers) threads.emplace_back([w = w.get()] { w->io.run(); });
  auto total = [&](auto field) {
    uint64_t n = 0;
    for (auto& w : workers) n += (w->c.*field).load();
    return n;
  };
  auto open_conn = [&](Member* m) {
    Worker* w = m->w;
    std::string local = "127.0.0." + std::to_string(1 + m->index % std::max(1, o.sources));
    Conn::Handlers h;
    h.on_open = [w, m] {
      for (auto& f : w->sh->target->on_open(m->index)) m->conn->send(f);
      if (w->sh->target->joined_on_open()) {
        m->joined = true;
        w->c.joined.fetch_add(1, std::memory_order_relaxed);
      }
    };
    h.on_message = [w, m](std::string_view f) { w->on_message(*m, f); };
    h.on_close = [w](uint16_t, const std::string&) {
      w->c.closed.fetch_add(1, std::memory_order_relaxed);
    };
    asio::post(w->io, [w, m, local, h = std::move(h)]() mutable {
      m->conn = w->sh->target->connect(w->io, m->index, local, std::move(h));
      m->conn->start();
    });
  };

  // Connect and join, at most 512 under way at once; a join refused counts as failed.
  auto t_open = now_ns();
  int opened = 0;
  const auto deadline = now_ns() + static_cast<uint64_t>(180e9);
  while (now_ns() < deadline) {
    uint64_t done = total(&Counters::joined) + total(&Counters::closed) + total(&Counters::errors);
    while (opened < conns && static_cast<uint64_t>(opened) < done + 512)
      open_conn(members[static_cast<std::size_t>(opened++)].get());
    if (done >= static_cast<uint64_t>(conns)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const double open_s = static_cast<double>(now_ns() - t_open) / 1e9;
  const uint64_t joined = total(&Counters::joined);
  const uint64_t setup_errors = total(&Counters::errors);
  std::fprintf(stderr, "[voice %s] %llu/%d members joined in %.2fs, %llu failed, %llu refused\n",
               o.target.c_str(), static_cast<unsigned long long>(joined), conns, open_s,
               static_cast<unsigned long long>(total(&Counters::closed)),
               static_cast<unsigned long long>(setup_errors));

  // Speak: schedules spread evenly over one period, speaker k of K at k/K of it.
  const uint64_t t0 = now_ns() + 5'000'000;
  for (auto& w : workers)
    for (auto* s : w->speakers) {
      const int k = s->room * o.speakers + s->member;
      s->next_due_ns = t0 + sh.period_ns * static_cast<uint64_t>(k) /
                                static_cast<uint64_t>(std::max(1, total_speakers));
    }
  sh.publishing = true;
  for (auto& w : workers) asio::post(w->io, [w = w.get()] { w->start_ticker(); });
  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));

  auto metrics0 = target->metrics();
  auto cpu0 = sample_process(o.server_pid);
  auto threads0 = thread_cpu_seconds(o.server_pid);
  auto gen0 = sample_process(static_cast<int>(::getpid()));
  auto busy0 = machine_busy_seconds();
  sh.measure_start_ns = now_ns();
  const auto start = now_ns();
  for (int tenth = 1; tenth <= static_cast<int>(o.duration * 10); ++tenth) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (tenth % 10 == 0)
      std::fprintf(stderr, "  t=%.0fs sent=%llu received=%llu\n",
                   static_cast<double>(now_ns() - start) / 1e9,
                   static_cast<unsigned long long>(total(&Counters::sent)),
                   static_cast<unsigned long long>(total(&Counters::received)));
  }
  sh.measure_end_ns = now_ns();
  const double secs = static_cast<double>(sh.measure_end_ns - sh.measure_start_ns) / 1e9;
  auto cpu1 = sample_process(o.server_pid);
  auto threads1 = thread_cpu_seconds(o.server_pid);
  auto gen1 = sample_process(static_cast<int>(::getpid()));
  auto busy1 = machine_busy_seconds();
  sh.publishing = false;
  // Drain: the given time, then on while frames still come (a server far behind holds seconds
  // of audio), up to 15 s more; what has not come by then is lost.
  const auto drain_start = now_ns();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.drain));
  for (uint64_t seen = total(&Counters::received);
       now_ns() - drain_start < static_cast<uint64_t>((o.drain + 15) * 1e9);) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const uint64_t now_seen = total(&Counters::received);
    if (now_seen == seen) break;
    seen = now_seen;
  }
  const double drain_s = static_cast<double>(now_ns() - drain_start) / 1e9;
  auto metrics1 = target->metrics();

  // Gather on each worker's thread (its members' counters are written there only).
  Histogram lat;
  uint64_t misrouted = 0, echoed = 0, out_of_order = 0, short_frames = 0, late_resets = 0;
  for (auto& w : workers) {
    std::promise<void> p;
    asio::post(w->io, [&, w = w.get()] {
      lat.merge(w->latency_us);
      misrouted += w->misrouted;
      echoed += w->echoed;
      out_of_order += w->out_of_order;
      short_frames += w->short_frames;
      late_resets += w->late_resets;
      if (w->tick) w->tick->cancel();
      p.set_value();
    });
    p.get_future().wait();
  }
  // Per listener: what the other speakers of its room sent while measuring, against what it got.
  std::vector<uint64_t> room_sent(static_cast<std::size_t>(o.rooms), 0);
  uint64_t sent_m = 0;
  for (auto& m : members)
    if (m->speaker) {
      room_sent[static_cast<std::size_t>(m->room)] += m->sent_measured;
      sent_m += m->sent_measured;
    }
  uint64_t expected = 0, received_m = 0, lost = 0, max_lost = 0, listeners_with_loss = 0,
           listeners = 0;
  for (auto& m : members) {
    if (!m->joined) continue;  // a member that never joined is in the failed count
    ++listeners;
    const uint64_t e = room_sent[static_cast<std::size_t>(m->room)] - (m->speaker ? m->sent_measured : 0);
    expected += e;
    received_m += m->received_measured;
    if (e > m->received_measured) {
      const uint64_t l = e - m->received_measured;
      lost += l;
      max_lost = std::max(max_lost, l);
      ++listeners_with_loss;
    }
  }

  json::object result{{"target", o.target},
                      {"scenario", "voice"},
                      {"label", o.label},
                      {"connections", static_cast<int64_t>(joined)},
                      {"connections_failed", static_cast<int64_t>(conns - static_cast<int>(joined))},
                      {"connect_seconds", open_s},
                      {"prepare_seconds", prepare_s}};
  result["params"] = json::object{{"rooms", o.rooms},       {"members", o.members},
                                  {"speakers", o.speakers}, {"fps", o.fps},
                                  {"size", o.size},         {"duration", o.duration},
                                  {"warmup", o.warmup},     {"drain", o.drain},
                                  {"threads", o.threads},   {"sources", o.sources}};
  result["seconds"] = secs;
  result["frames_sent"] = static_cast<int64_t>(sent_m);
  result["frames_sent_total"] = static_cast<int64_t>(total(&Counters::sent));
  result["frames_expected"] = static_cast<int64_t>(expected);
  result["frames_received"] = static_cast<int64_t>(received_m);
  result["frames_received_total"] = static_cast<int64_t>(total(&Counters::received));
  result["sent_per_s"] = static_cast<double>(sent_m) / secs;
  result["offered_out_per_s"] = static_cast<double>(expected) / secs;
  result["frames_per_s"] = static_cast<double>(received_m) / secs;
  // What the server carried while measuring (frames sent before it too), not counting backlog
  // delivered in the drain: its throughput when it falls behind.
  result["arrived_per_s"] = static_cast<double>(total(&Counters::arrived_measured)) / secs;
  result["drain_seconds"] = drain_s;
  result["lost"] = static_cast<int64_t>(lost);
  result["listeners"] = static_cast<int64_t>(listeners);
  result["listeners_with_loss"] = static_cast<int64_t>(listeners_with_loss);
  result["max_lost_per_listener"] = static_cast<int64_t>(max_lost);
  result["misrouted"] = static_cast<int64_t>(misrouted);
  result["echoed"] = static_cast<int64_t>(echoed);
  result["out_of_order"] = static_cast<int64_t>(out_of_order);
  result["short_frames"] = static_cast<int64_t>(short_frames);
  result["schedule_resets"] = static_cast<int64_t>(late_resets);
  result["errors"] = static_cast<int64_t>(total(&Counters::errors) - setup_errors);
  result["latency_us"] = quantiles(lat);
  if (!metrics1.empty()) {
    json::object m;
    // Counters from just before measuring to the end of the drain; gauges as they were then.
    for (auto& [k, v] : metrics1)
      m[k] = k.find("_total") == std::string::npos ? metrics0[k]
                                                   : v - (metrics0.count(k) ? metrics0[k] : 0.0);
    result["server_metrics"] = m;
  }
  if (cpu0.ok && cpu1.ok) {
    const double server = cpu1.cpu_seconds - cpu0.cpu_seconds;
    result["server_cpu_percent"] = 100.0 * server / secs;
    result["server_rss"] = cpu1.rss_bytes;
    const auto arrived = static_cast<double>(total(&Counters::arrived_measured));
    result["server_ns_per_frame"] = arrived > 0 ? server * 1e9 / arrived : 0.0;
    json::object th;
    for (auto& [name, t] : threads1) {
      auto it = threads0.find(name);
      double d = t - (it == threads0.end() ? 0.0 : it->second);
      if (d > 0) th[name] = d;
    }
    result["cpu_seconds"] = json::object{{"server_threads", th},
                                         {"server", server},
                                         {"generator", gen1.cpu_seconds - gen0.cpu_seconds},
                                         {"machine_busy", busy1 - busy0},
                                         {"machine_cpus", sysconf(_SC_NPROCESSORS_ONLN)}};
  }
  std::fprintf(stderr,
               "[voice %s] %d rooms: %.0f frames/s relayed of %.0f offered, p50 %llu us p99 %llu "
               "us max %llu us, lost %llu (%llu of %llu listeners), misrouted %llu, out of order "
               "%llu\n",
               o.target.c_str(), o.rooms, static_cast<double>(received_m) / secs,
               static_cast<double>(expected) / secs,
               static_cast<unsigned long long>(lat.quantile(0.5)),
               static_cast<unsigned long long>(lat.quantile(0.99)),
               static_cast<unsigned long long>(lat.max()), static_cast<unsigned long long>(lost),
               static_cast<unsigned long long>(listeners_with_loss),
               static_cast<unsigned long long>(listeners),
               static_cast<unsigned long long>(misrouted),
               static_cast<unsigned long long>(out_of_order));

  for (auto& m : members)
    if (m->conn) asio::post(m->w->io, [c = m->conn] { c->close(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  guards.clear();
  for (auto& w : workers) w->io.stop();
  for (auto& t : threads) t.join();
  return result;
}

}  // namespace converge::bench
