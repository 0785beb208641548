#include "service/writer.hpp"
#include "base/process.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/clock.hpp"
#include "service/service.hpp"

namespace converge {

namespace {
constexpr std::size_t kConvCacheMax = 200000;  // entries; cleared wholesale beyond this
}

Writer::Writer(std::unique_ptr<StoreSession> session, Bus& bus, Hub& hub, Metrics& metrics,
               int64_t batch_max)
    : session_(std::move(session)),
      bus_(bus),
      hub_(hub),
      metrics_(metrics),
      batch_max_(static_cast<std::size_t>(batch_max)) {}

Writer::~Writer() {
  stop();
}

void Writer::start() {
  thread_ = std::thread([this] {
    name_this_thread("writer");
    run();
  });
}

void Writer::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

template <class J>
void Writer::enqueue(J&& job) {
  std::unique_lock lk(mu_);
  if (stopping_) {
    lk.unlock();
    job.done(make_error(Errc::unavailable, "node is shutting down"));
    return;
  }
  const bool wake = queue_.empty();  // the writer only sleeps on an empty queue
  queue_.emplace_back(std::forward<J>(job));
  lk.unlock();
  if (wake) cv_.notify_one();
}

void Writer::submit(SendJob job) {
  enqueue(std::move(job));
}
void Writer::submit(FnJob job) {
  enqueue(std::move(job));
}

void Writer::run() {
  std::vector<Job> batch;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      if (queue_.size() <= batch_max_) {
        batch.swap(queue_);
      } else {
        auto first = queue_.begin();
        auto last = first + static_cast<std::ptrdiff_t>(batch_max_);
        batch.assign(std::make_move_iterator(first), std::make_move_iterator(last));
        queue_.erase(first, last);
      }
    }
    process(batch);
    batch.clear();
  }
}

Result<const Writer::ConvInfo*> Writer::conversation(ConversationId id, int64_t members_version) {
  if (auto it = conv_cache_.find(id); it != conv_cache_.end()) {
    if (it->second.members_version == members_version) return &it->second;
    conv_cache_.erase(it);
  }
  auto c = session_->get_conversation(id);
  if (!c) return c.error();
  if (!c.value()) return make_error(Errc::not_found, "no such conversation");
  auto members = std::make_shared<MemberList>();
  for (auto& m : c.value()->members) members->push_back(m.user_id);
  std::sort(members->begin(), members->end());
  if (conv_cache_.size() >= kConvCacheMax) conv_cache_.clear();
  auto [it, _] = conv_cache_.emplace(id, ConvInfo{std::move(members), c.value()->members_version});
  return &it->second;
}

Result<Writer::SeqSlot*> Writer::seq_slot(ConversationId id) {
  if (auto it = seqs_.find(id); it != seqs_.end()) return &it->second;
  auto lock = session_->lock_conversation(id);
  if (!lock) return lock.error();
  return &seqs_.emplace(id, SeqSlot{lock->last_seq, lock->members_version, false}).first->second;
}

Status Writer::flush_seqs() {
  Status st = ok_status();
  for (auto& [id, slot] : seqs_)
    if (slot.dirty && st) st = session_->set_last_seq(id, slot.last);
  seqs_.clear();
  return st;
}

// One statement per message: the seq comes from the batch's slot for the conversation (read
// once per batch), the insert itself detects a retried client_msg_id. A failed insert is undone
// by SQL's statement atomicity and leaves the slot alone, so no savepoint is needed.
Result<SendAck> Writer::process_send(SendJob& job, std::shared_ptr<Delivery>& out) {
  auto& req = job.req;
  // The row lock first: from here to the commit no node changes the members, and the version
  // read under it tells whether the cached members are still them.
  auto slot = seq_slot(req.conversation_id);
  if (!slot) return slot.error();
  auto info = conversation(req.conversation_id, slot.value()->members_version);
  if (!info) return info.error();
  auto& members = *info.value()->members;
  if (!std::binary_search(members.begin(), members.end(), job.who.user_id))
    return make_error(Errc::forbidden,
                      "not a member of conversation " + std::to_string(req.conversation_id));

  std::optional<FileMeta> file;
  if (!req.file_id.empty()) {
    auto f = session_->get_file(req.file_id);
    if (!f) return f.error();
    if (!f.value()) return make_error(Errc::not_found, "unknown file_id " + req.file_id);
    auto ok = session_->file_accessible(req.file_id, job.who.user_id);
    if (!ok) return ok.error();
    if (!ok.value())
      return make_error(Errc::forbidden, "file " + req.file_id + " is not yours to send");
    file = std::move(*f.value());
  }

  auto d = std::make_shared<Delivery>();
  Message& m = d->msg;
  m.conversation_id = req.conversation_id;
  m.seq = slot.value()->last + 1;
  m.publisher_id = job.who.user_id;
  m.publisher_name = job.who.user_name;
  m.type = req.type;
  // Seed 000: a file message's body is the file name.
  m.body = (req.type == MessageType::file && req.body.empty() && file) ? file->name
                                                                       : std::move(req.body);
  m.client_msg_id = std::move(req.client_msg_id);
  m.ts_ms = now_ms();
  m.file = std::move(file);
  auto stored = session_->insert_message(m, req.file_id);
  if (!stored) return stored.error();
  if (!stored.value()) {  // a retry: answer with what the first send got
    auto prev = session_->find_sent(job.who.user_id, m.client_msg_id);
    if (!prev) return prev.error();
    if (!prev.value())
      return make_error(Errc::internal, "seq " + std::to_string(m.seq) + " of conversation " +
                                            std::to_string(m.conversation_id) + " taken");
    return SendAck{prev.value()->conversation_id, prev.value()->seq, std::move(m.client_msg_id),
                   prev.value()->ts_ms, true};
  }
  slot.value()->last = m.seq;
  slot.value()->dirty = true;
  d->members = info.value()->members;
  d->members_version = info.value()->members_version;
  SendAck ack{m.conversation_id, m.seq, m.client_msg_id, m.ts_ms, false};
  out = std::move(d);
  return ack;
}

void Writer::process(std::vector<Job>& batch) {
  const int64_t t0 = mono_us();
  std::vector<Done> done;
  done.reserve(batch.size());
  std::size_t messages = 0;

  auto begun = session_->begin();
  Status seqs_stored = ok_status();
  if (begun) {
    // The batch's conversations are locked in ascending id order before any job runs: writers
    // of several nodes then always take their row locks in the same order and never deadlock
    // (PostgreSQL would abort one of them after a second).
    std::vector<ConversationId> ids;
    for (auto& job : batch)
      if (auto* s = std::get_if<SendJob>(&job)) ids.push_back(s->req.conversation_id);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (auto id : ids) (void)seq_slot(id);  // a missing one fails its own jobs later
  }
  for (auto& job : batch) {
    Done d;
    if (auto* s = std::get_if<SendJob>(&job)) {
      d.send_done = std::move(s->done);
      d.shard = s->shard;
      if (!begun)
        d.send_result = Result<SendAck>(begun.error());
      else
        d.send_result = process_send(*s, d.delivery);
      if (d.delivery) ++messages;
    } else {
      auto& f = std::get<FnJob>(job);
      d.fn_done = std::move(f.done);
      if (f.invalidates != 0) conv_cache_.erase(f.invalidates);
      // The function may read last_seq or change members: the batch's seqs go to the store
      // first and are read again after it.
      if (begun && seqs_stored) seqs_stored = flush_seqs();
      if (!begun) {
        d.fn_status = begun.error();
      } else if (auto sp = session_->savepoint(); !sp) {
        d.fn_status = sp;
      } else {
        d.fn_status = f.fn(*session_);
        if (d.fn_status)
          (void)session_->release_savepoint();
        else
          session_->rollback_to_savepoint();
      }
    }
    done.push_back(std::move(d));
  }

  if (begun && seqs_stored) seqs_stored = flush_seqs();
  seqs_.clear();
  Status committed = begun;
  if (begun && !seqs_stored) {
    committed = seqs_stored;
    session_->rollback();
    conv_cache_.clear();
    spdlog::error("store: saving seqs failed: {}", committed.error().message);
  } else if (begun) {
    committed = session_->commit();
    if (!committed) {
      session_->rollback();
      conv_cache_.clear();
      spdlog::error("store commit failed: {}", committed.error().message);
    }
  }
  metrics_.store_batches_total.add();
  metrics_.store_commit_seconds.observe(static_cast<double>(mono_us() - t0) / 1e6);
  metrics_.store_batch_messages.observe(static_cast<double>(messages));

  // Completions grouped by the thread they run on: one post per shard for the whole batch.
  std::vector<std::vector<std::function<void()>>> per_shard(
      static_cast<std::size_t>(hub_.shard_count()));
  std::vector<std::shared_ptr<const Delivery>> published;
  published.reserve(messages);
  for (auto& d : done) {
    if (d.send_done) {
      Result<SendAck> r =
          committed ? std::move(*d.send_result) : Result<SendAck>(committed.error());
      if (r) {
        if (r->duplicate)
          metrics_.messages_duplicate_total.add();
        else
          metrics_.messages_stored_total.add();
      } else {
        metrics_.messages_rejected_total.add();
      }
      if (d.shard >= 0 && d.shard < hub_.shard_count())
        per_shard[static_cast<std::size_t>(d.shard)].push_back(
            [fn = std::move(d.send_done), r = std::move(r)]() mutable { fn(std::move(r)); });
      else
        d.send_done(std::move(r));
      if (committed && d.delivery) published.push_back(std::move(d.delivery));
    } else if (d.fn_done) {
      d.fn_done(committed ? d.fn_status : committed);
    }
  }
  for (std::size_t i = 0; i < per_shard.size(); ++i)
    if (!per_shard[i].empty())
      hub_.post(static_cast<int>(i), [fns = std::move(per_shard[i])]() mutable {
        for (auto& fn : fns) fn();
      });
  if (!published.empty()) bus_.publish(std::move(published));
  session_->maintain();
}

}  // namespace converge
