#include "service/push.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <map>
#include <tuple>

#include "base/clock.hpp"
#include "base/crypto.hpp"
#include "base/process.hpp"
#include "base/utf8.hpp"
#include "service/cluster.hpp"
#include "service/service.hpp"

namespace converge {

namespace json = boost::json;

namespace {

// Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and the
// marks U+200E, U+200F, U+061C: in a notification they would reorder what follows them.
bool bidi_control(uint32_t cp) {
  return (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E ||
         cp == 0x200F || cp == 0x061C;
}

// The code point at s[i] (valid UTF-8) and its length.
std::pair<uint32_t, std::size_t> decode(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  auto cont = [&](std::size_t k) { return static_cast<uint32_t>(s[i + k]) & 0x3F; };
  if (c < 0x80) return {c, 1};
  if (c < 0xE0 && i + 1 < s.size()) return {((c & 0x1Fu) << 6) | cont(1), 2};
  if (c < 0xF0 && i + 2 < s.size()) return {((c & 0x0Fu) << 12) | (cont(1) << 6) | cont(2), 3};
  if (i + 3 < s.size())
    return {((c & 0x07u) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3), 4};
  return {0xFFFD, s.size() - i};
}

}  // namespace

std::string push_preview(std::string_view body_in, std::size_t max_chars) {
  // Bodies are valid UTF-8 (every edge checks); repaired all the same, since the signature
  // covers what is sent and the receiver must be able to parse it.
  std::string repaired;
  std::string_view body = body_in;
  if (!utf8_valid(body)) {
    repaired = utf8_repair(body);
    body = repaired;
  }
  std::string out;
  out.reserve(std::min(body.size(), max_chars * 4));
  std::size_t chars = 0;
  for (std::size_t i = 0; i < body.size() && chars < max_chars; ++chars) {
    auto [cp, len] = decode(body, i);
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || bidi_control(cp))
      out += ' ';
    else
      out.append(body.substr(i, len));
    i += len;
  }
  return out;
}

std::string push_payload(const Message& m, const std::string& user_id, bool mentioned,
                         std::size_t preview_chars) {
  json::object o;
  o.reserve(9);
  o["user_id"] = user_id;
  o["conversation_id"] = std::to_string(m.conversation_id);
  o["seq"] = m.seq;
  o["publisher_id"] = m.publisher_id;
  o["publisher_name"] =
      utf8_valid(m.publisher_name) ? m.publisher_name : utf8_repair(m.publisher_name);
  o["type"] = message_type_name(m.type);
  o["preview"] = push_preview(m.body, preview_chars);
  o["mentioned"] = mentioned;
  o["ts"] = m.ts_ms;
  return json::serialize(o);
}

std::string push_body(std::span<const std::string> payloads) {
  std::size_t n = 16;
  for (auto& p : payloads) n += p.size() + 1;
  std::string out;
  out.reserve(n);
  out += R"({"pushes":[)";
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    if (i > 0) out += ',';
    out += payloads[i];
  }
  out += "]}";
  return out;
}

std::string push_signature(std::string_view secret, std::string_view body) {
  return "sha256=" + hmac_sha256_hex(secret, body);
}

int64_t push_backoff_ms(int64_t attempts, const PushOptions& o, double jitter01) {
  int64_t wait = std::max<int64_t>(1, o.retry_base_ms);
  for (int64_t i = 1; i < attempts && wait < o.retry_cap_ms; ++i) wait *= 2;
  wait = std::min(wait, std::max<int64_t>(1, o.retry_cap_ms));
  const double j = std::clamp(jitter01, 0.0, 1.0);
  return wait / 2 + static_cast<int64_t>(static_cast<double>(wait - wait / 2) * j);
}

// ------------------------------------------------------------------------------- the worker

PushWorker::PushWorker(PushOptions opts, Service& svc, Metrics& metrics)
    : opts_(std::move(opts)),
      svc_(svc),
      metrics_(metrics),
      node_(svc.bus().node_id()),
      rng_(std::random_device{}()) {}

PushWorker::~PushWorker() {
  stop();
}

void PushWorker::start() {
  started_ms_ = now_ms();
  thread_ = std::thread([this] {
    name_this_thread("push");
    run();
  });
}

void PushWorker::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PushWorker::enqueue(std::span<const std::shared_ptr<const Delivery>> stored) {
  std::size_t spilled = 0, queued = 0;
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;  // in the outbox: the next run (or an adopter) pushes them
    for (auto& d : stored) {
      if (queue_.size() >= opts_.queue_max) {
        ++spilled;
        continue;
      }
      if (queue_.empty()) first_queued_ms_ = now_ms();
      queue_.push_back(d);
      ++queued;
    }
    if (spilled > 0) scan_ = scan_restart_ = true;
    metrics_.push_queue_depth.set(static_cast<int64_t>(queue_.size()));
  }
  metrics_.push_queued_total.add(queued);
  metrics_.push_spilled_total.add(spilled);
  if (queued > 0 || spilled > 0) cv_.notify_one();
}

void PushWorker::adopt(const std::string& node_id) {
  {
    std::lock_guard lk(mu_);
    if (node_id == node_) return;
    adopt_.insert(node_id);
  }
  cv_.notify_one();
}

void PushWorker::wake_scan(int64_t delay_ms) {
  std::lock_guard lk(mu_);
  scan_ = scan_restart_ = true;
  scan_at_ms_ = std::max(scan_at_ms_, now_ms() + delay_ms);
}

void PushWorker::run() {
  for (;;) {
    std::vector<Candidate> fresh;
    std::set<std::string> adopt;
    bool scan = false;
    {
      std::unique_lock lk(mu_);
      int64_t wake = std::min(next_due_ms_, next_sweep_ms_);
      if (scan_) wake = std::min(wake, scan_at_ms_);
      const auto until = std::chrono::steady_clock::now() +
                         std::chrono::milliseconds(std::clamp<int64_t>(wake - now_ms(), 0, 60000));
      cv_.wait_until(lk, until, [this] {
        return stopping_ || !queue_.empty() || !adopt_.empty() ||
               (scan_ && now_ms() >= scan_at_ms_);
      });
      if (stopping_) return;
      // A message waits up to batch_ms for others to share its POST.
      if (!queue_.empty() && opts_.batch_ms > 0 && queue_.size() < opts_.batch_max) {
        const auto fill = std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(
                              std::max<int64_t>(0, first_queued_ms_ + opts_.batch_ms - now_ms()));
        cv_.wait_until(lk, fill, [this] { return stopping_ || queue_.size() >= opts_.batch_max; });
        if (stopping_) return;
      }
      while (!queue_.empty() && fresh.size() < opts_.batch_max) {
        auto& d = queue_.front();
        fresh.push_back(Candidate{PushRef{d->msg.conversation_id, d->msg.seq}, d});
        queue_.pop_front();
      }
      if (!queue_.empty()) first_queued_ms_ = now_ms();
      metrics_.push_queue_depth.set(static_cast<int64_t>(queue_.size()));
      adopt.swap(adopt_);
      // The outbox is read back once the queue is drained: most of its rows are the queue's.
      scan = scan_ && queue_.empty() && now_ms() >= scan_at_ms_;
      if (scan && scan_restart_) {
        scan_after_ = PushRef{};
        scan_restart_ = false;
      }
    }
    for (auto& n : adopt) take_over(n);
    if (!fresh.empty()) decide(std::move(fresh));
    if (now_ms() >= next_due_ms_) retry_due();
    if (scan && !scan_outbox()) {
      std::lock_guard lk(mu_);
      if (!scan_restart_) scan_ = false;
    }
    if (now_ms() >= next_sweep_ms_) sweep_owners();
  }
}

void PushWorker::decide(std::vector<Candidate> batch) {
  std::vector<PushRef> refs;
  refs.reserve(batch.size());
  for (auto& c : batch) refs.push_back(c.ref);
  std::map<ConversationId, std::map<std::string, bool>> members;  // user -> muted, now
  std::vector<PushRef> owned;
  try {
    auto s = svc_.lease();
    // Claimed: only messages still in this node's outbox (the outbox pass may have taken one
    // meanwhile, or another node this node's rows).
    auto o = s->push_outbox_owned(node_, refs);
    if (!o) throw std::runtime_error(o.error().message);
    owned = std::move(o.value());
    for (auto& c : batch) {
      if (members.count(c.ref.conversation_id) ||
          !std::binary_search(owned.begin(), owned.end(), c.ref))
        continue;
      auto conv = s->get_conversation(c.ref.conversation_id);
      if (!conv) throw std::runtime_error(conv.error().message);
      auto& m = members[c.ref.conversation_id];
      if (conv.value())
        for (auto& mem : conv.value()->members) m[mem.user_id] = mem.muted;
    }
  } catch (const std::exception& e) {
    spdlog::warn("push: reading the store failed: {} (the outbox keeps the messages)", e.what());
    wake_scan(1000);
    return;
  }

  std::vector<Attempt> attempts;
  const int64_t now = now_ms();
  for (auto& c : batch) {
    if (!std::binary_search(owned.begin(), owned.end(), c.ref)) continue;
    const Message& m = c.delivery->msg;
    auto& now_members = members[c.ref.conversation_id];
    // The members when it was stored, who are members still (a member who left since gets
    // nothing); read back from the outbox, the members now.
    std::vector<std::string> to;
    if (c.delivery->members)
      to.assign(c.delivery->members->begin(), c.delivery->members->end());
    else
      for (auto& [u, _] : now_members) to.push_back(u);
    for (auto& u : to) {
      if (u == m.publisher_id) continue;
      auto it = now_members.find(u);
      if (it == now_members.end()) continue;
      const bool mentioned = mentions_user(m.mentions, u);
      if (it->second && !mentioned) {  // muted, and not mentioned
        metrics_.push_skipped_muted_total.add();
        continue;
      }
      Attempt a;
      a.record = PushRecord{
          u, m.conversation_id, m.seq, push_payload(m, u, mentioned, opts_.preview_chars), 0, now,
          ""};
      attempts.push_back(std::move(a));
    }
  }
  post_and_record(std::move(attempts), owned);
}

bool PushWorker::drop_online(std::vector<Attempt>& attempts) {
  if (attempts.empty()) return true;
  std::vector<std::string> users;
  for (auto& a : attempts) users.push_back(a.record.user_id);
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  Result<std::set<std::string>> online = std::set<std::string>{};
  try {
    online = svc_.online_anywhere(users);
  } catch (const std::exception& e) {
    online = make_error(Errc::unavailable, e.what());
  }
  if (!online) {
    spdlog::warn("push: presence unknown ({}): trying later", online.error().message);
    return false;
  }
  std::size_t n = 0;
  for (std::size_t i = 0; i < attempts.size(); ++i) {
    if (online.value().count(attempts[i].record.user_id)) continue;
    if (n != i) attempts[n] = std::move(attempts[i]);
    ++n;
  }
  metrics_.push_skipped_online_total.add(attempts.size() - n);
  attempts.resize(n);
  return true;
}

bool PushWorker::post_and_record(std::vector<Attempt> attempts, const std::vector<PushRef>& done) {
  // Online now (right before the POST, on any node and protocol): no push; the device syncs.
  std::vector<PushRecord> gone;  // pending rows of users who came online: dropped
  {
    std::vector<Attempt> before = attempts;
    if (!drop_online(attempts)) {
      if (!done.empty()) wake_scan(1000);  // the outbox keeps them; pending rows stay
      return false;
    }
    std::set<std::tuple<std::string, ConversationId, Seq>> kept;
    for (auto& a : attempts) kept.emplace(a.record.user_id, a.record.conversation_id, a.record.seq);
    for (auto& b : before)
      if (b.pending && !kept.count({b.record.user_id, b.record.conversation_id, b.record.seq}))
        gone.push_back(std::move(b.record));
  }

  std::vector<PushRecord> retry, dead, delivered_pending;
  const std::size_t per_post = std::max<std::size_t>(1, opts_.batch_max);
  for (std::size_t off = 0; off < attempts.size(); off += per_post) {
    const std::size_t n = std::min(per_post, attempts.size() - off);
    std::vector<std::string> payloads;
    payloads.reserve(n);
    for (std::size_t i = 0; i < n; ++i) payloads.push_back(attempts[off + i].record.payload);
    const std::string body = push_body(payloads);
    const int64_t t0 = mono_us();
    PushResponse r;
    try {
      r = opts_.post(body, push_signature(opts_.secret, body));
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    metrics_.push_requests_total.add();
    metrics_.push_request_seconds.observe(static_cast<double>(mono_us() - t0) / 1e6);
    const int64_t now = now_ms();
    if (r.delivered()) {
      metrics_.push_sent_total.add(n);
      for (std::size_t i = 0; i < n; ++i)
        if (attempts[off + i].pending) delivered_pending.push_back(attempts[off + i].record);
      continue;
    }
    metrics_.push_request_failures_total.add();
    const std::string why = r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error;
    spdlog::warn("push: POST of {} pushes failed: {}", n, why);
    for (std::size_t i = 0; i < n; ++i) {
      PushRecord rec = attempts[off + i].record;
      rec.attempts += 1;
      rec.last_error = why;
      if (rec.attempts >= opts_.retry_max) {
        rec.at_ms = now;
        dead.push_back(std::move(rec));
      } else {
        rec.at_ms = now + push_backoff_ms(rec.attempts, opts_,
                                          std::uniform_real_distribution<>(0, 1)(rng_));
        next_due_ms_ = std::min(next_due_ms_, rec.at_ms);
        retry.push_back(std::move(rec));
      }
    }
  }
  metrics_.push_retried_total.add(retry.size());
  metrics_.push_dead_letters_total.add(dead.size());
  if (done.empty() && retry.empty() && dead.empty() && delivered_pending.empty() && gone.empty())
    return true;

  // One write: the outcomes, and the messages decided out of the outbox.
  std::vector<PushRecord> remove = std::move(delivered_pending);
  for (auto& g : gone) remove.push_back(std::move(g));
  for (auto& d : dead) remove.push_back(d);  // from pending, if it was there
  auto st = svc_.write([&](StoreSession& s) -> Status {
    if (auto r = s.push_pending_remove(node_, remove); !r) return r;
    if (auto r = s.push_pending_put(node_, retry); !r) return r;
    if (auto r = s.push_dead_put(dead); !r) return r;
    if (!done.empty())
      if (auto r = s.push_outbox_remove(node_, done); !r) return r.error();
    return ok_status();
  });
  if (!st) {
    // The outbox keeps what it had, and pending rows are as they were: tried again later (a
    // push delivered just now may then be delivered twice; receivers drop repeats by key).
    spdlog::error("push: recording the outcome failed: {}", st.error().message);
    if (!done.empty()) wake_scan(1000);
    return false;
  }
  return true;
}

void PushWorker::retry_due() {
  const int64_t now = now_ms();
  Result<std::vector<PushRecord>> due = std::vector<PushRecord>{};
  try {
    due = svc_.lease()->push_pending_due(node_, now, static_cast<int64_t>(opts_.batch_max));
  } catch (const std::exception& e) {
    due = make_error(Errc::unavailable, e.what());
  }
  if (!due) {
    spdlog::warn("push: reading pending pushes failed: {}", due.error().message);
    next_due_ms_ = now + 1000;
    return;
  }
  const bool more = due->size() >= opts_.batch_max;
  if (!due->empty()) {
    std::vector<Attempt> attempts;
    for (auto& r : due.value()) attempts.push_back(Attempt{std::move(r), true});
    if (!post_and_record(std::move(attempts), {})) {
      next_due_ms_ = now_ms() + 1000;  // nothing recorded: not again at once
      return;
    }
  }
  if (more) {
    next_due_ms_ = 0;  // more are due now
    return;
  }
  Result<std::optional<int64_t>> next = std::optional<int64_t>{};
  try {
    next = svc_.lease()->push_pending_next(node_);
  } catch (const std::exception& e) {
    next = make_error(Errc::unavailable, e.what());
  }
  if (!next) {
    next_due_ms_ = now_ms() + 1000;
    return;
  }
  // Every row due was rescheduled or removed: one still due came meanwhile (or presence was
  // unknown), and waits a moment rather than spinning.
  next_due_ms_ = next.value() ? std::max(*next.value(), now_ms() + 50) : INT64_MAX;
}

bool PushWorker::scan_outbox() {
  std::vector<Candidate> batch;
  bool more = false;
  try {
    auto s = svc_.lease();
    auto refs = s->push_outbox_list(node_, scan_after_, static_cast<int64_t>(opts_.batch_max));
    if (!refs) throw std::runtime_error(refs.error().message);
    more = refs->size() >= opts_.batch_max;
    for (auto& ref : refs.value()) {
      scan_after_ = ref;
      auto m = s->messages_after(ref.conversation_id, ref.seq - 1, 1);
      if (!m) throw std::runtime_error(m.error().message);
      auto d = std::make_shared<Delivery>();
      if (m->empty() || m->front().seq != ref.seq) {
        // No such message (never expected): the row goes, deciding nothing.
        d->msg.conversation_id = ref.conversation_id;
        d->msg.seq = ref.seq;
        d->members = std::make_shared<const MemberList>();
      } else {
        d->msg = std::move(m->front());
      }
      batch.push_back(Candidate{ref, std::move(d)});
    }
  } catch (const std::exception& e) {
    spdlog::warn("push: reading the outbox failed: {}", e.what());
    wake_scan(1000);
    return true;
  }
  if (!batch.empty()) decide(std::move(batch));
  return more;
}

void PushWorker::take_over(const std::string& node_id) {
  int64_t n = 0;
  auto st = svc_.write([&](StoreSession& s) -> Status {
    auto r = s.push_adopt(node_id, node_);
    if (!r) return r.error();
    n = r.value();
    return ok_status();
  });
  if (!st) {
    spdlog::warn("push: adopting node {}'s pushes failed: {}", node_id, st.error().message);
    next_sweep_ms_ = std::min(next_sweep_ms_, now_ms() + 1000);
    return;
  }
  if (n > 0) {
    spdlog::info("push: took over {} outbox and pending rows of node {}", n, node_id);
    metrics_.push_adopted_total.add(static_cast<uint64_t>(n));
    wake_scan(0);
    next_due_ms_ = 0;
  }
}

void PushWorker::sweep_owners() {
  const int64_t now = now_ms();
  next_sweep_ms_ = now + std::max<int64_t>(1000, opts_.node_timeout_ms);
  // In a cluster, a node's view of who is alive is complete once it has heard every heartbeat.
  if (!opts_.single_node && now - started_ms_ < opts_.node_timeout_ms) {
    next_sweep_ms_ = started_ms_ + opts_.node_timeout_ms;
    return;
  }
  Result<std::vector<std::string>> owners = std::vector<std::string>{};
  try {
    owners = svc_.lease()->push_owners();
  } catch (const std::exception& e) {
    owners = make_error(Errc::unavailable, e.what());
  }
  if (!owners) {
    spdlog::warn("push: listing owners failed: {}", owners.error().message);
    return;
  }
  std::set<std::string> alive;
  if (!opts_.single_node)
    for (auto& n : svc_.nodes()) alive.insert(n.id);
  for (auto& o : owners.value())
    if (o != node_ && !alive.count(o)) take_over(o);
}

}  // namespace converge
