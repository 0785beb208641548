#include "service/writer.hpp"
#include "base/process.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/clock.hpp"
#include "service/push.hpp"
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
  std::vector<std::string> admins;
  for (auto& m : c.value()->members) {
    members->push_back(m.user_id);
    if (m.role == Role::admin) admins.push_back(m.user_id);
  }
  std::sort(members->begin(), members->end());
  std::sort(admins.begin(), admins.end());
  if (conv_cache_.size() >= kConvCacheMax) conv_cache_.clear();
  auto [it, _] = conv_cache_.emplace(id, ConvInfo{std::move(members), c.value()->members_version,
                                                  c.value()->owner, std::move(admins)});
  return &it->second;
}

bool Writer::may_mention_all(const ConvInfo& info, const AuthContext& who) {
  if (!info.owner.empty() && info.owner == who.user_id) return true;
  return std::binary_search(info.admins.begin(), info.admins.end(), who.user_id);
}

Status Writer::check_mentions(const std::vector<std::string>& mentions, const ConvInfo& info,
                              const AuthContext& who) {
  if (mentions_all(mentions)) {
    if (!may_mention_all(info, who))
      return make_error(Errc::forbidden, "only the owner and admins mention all");
    return ok_status();
  }
  auto& members = *info.members;
  for (auto& u : mentions)
    if (!std::binary_search(members.begin(), members.end(), u))
      return make_error(Errc::bad_request, "mentioned user " + u + " is not a member");
  return ok_status();
}

Status Writer::lock_slots(std::vector<ConversationId> ids) {
  std::erase_if(ids, [this](ConversationId id) { return seqs_.contains(id); });
  if (ids.empty()) return ok_status();
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  auto locks = session_->lock_conversations(ids);
  if (!locks) return locks.error();
  for (auto id : ids) seqs_.emplace(id, SeqSlot{0, 0, false, false});  // absent: none such
  for (auto& l : locks.value()) {
    auto it = seqs_.find(l.id);
    if (it != seqs_.end()) it->second = SeqSlot{l.last_seq, l.members_version, false, true};
  }
  return ok_status();
}

Status Writer::flush_seqs() {
  std::vector<LastSeq> tops;
  for (auto& [id, slot] : seqs_)
    if (slot.dirty) tops.push_back(LastSeq{id, slot.last});
  seqs_.clear();
  if (tops.empty()) return ok_status();
  std::sort(tops.begin(), tops.end(),
            [](const LastSeq& x, const LastSeq& y) { return x.id < y.id; });
  return session_->set_last_seqs(tops);
}

namespace {
// Messages per insert_messages call: a writer's batch (1024 jobs by default) in one statement.
constexpr std::size_t kInsertChunk = 1024;
}  // namespace

// Everything that may reject a send before it gets a seq, in the order of old: the row lock
// (taken for the batch already), the membership it guards, the file.
Result<Writer::Pending> Writer::check_send(SendJob& job, const Status& locked) {
  auto& req = job.req;
  auto it = seqs_.find(req.conversation_id);
  if (it == seqs_.end()) {
    if (!locked) return locked.error();
    return make_error(Errc::internal, "conversation not locked");
  }
  if (!it->second.exists) return make_error(Errc::not_found, "no such conversation");
  // From the row lock to the commit no node changes the members, and the version read under
  // it tells whether the cached members are still them.
  auto info = conversation(req.conversation_id, it->second.members_version);
  if (!info) return info.error();
  auto& members = *info.value()->members;
  if (!std::binary_search(members.begin(), members.end(), job.who.user_id))
    return make_error(Errc::forbidden,
                      "not a member of conversation " + std::to_string(req.conversation_id));
  if (!req.mentions.empty())
    if (auto st = check_mentions(req.mentions, *info.value(), job.who); !st) return st.error();

  Pending p;
  p.job = &job;
  p.slot = &it->second;  // unordered_map: stable until seqs_ is cleared (flush_seqs)
  p.members = info.value()->members;
  p.members_version = info.value()->members_version;
  if (!req.file_id.empty()) {
    auto f = session_->get_file(req.file_id);
    if (!f) return f.error();
    if (!f.value()) return make_error(Errc::not_found, "unknown file_id " + req.file_id);
    auto ok = session_->file_accessible(req.file_id, job.who.user_id);
    if (!ok) return ok.error();
    if (!ok.value())
      return make_error(Errc::forbidden, "file " + req.file_id + " is not yours to send");
    p.file = std::move(*f.value());
  }
  return p;
}

// A send that is stored: its slot moves on, its delivery goes to the bus after commit.
Result<SendAck> Writer::stored(Pending& p, Message m, std::shared_ptr<Delivery>& out) {
  p.slot->last = m.seq;
  p.slot->dirty = true;
  auto d = std::make_shared<Delivery>();
  SendAck ack{m.conversation_id, m.seq, m.client_msg_id, m.ts_ms, false};
  d->msg = std::move(m);
  d->members = std::move(p.members);
  d->members_version = p.members_version;
  out = std::move(d);
  return ack;
}

// One statement per message: a failed insert is undone by SQL's statement atomicity and leaves
// the slot alone, so the next message takes the seq this one did not.
Result<SendAck> Writer::store_one(Pending& p, Message m, const std::string& file_id,
                                  std::shared_ptr<Delivery>& out) {
  m.seq = p.slot->last + 1;
  auto ins = session_->insert_message(m, file_id);
  if (!ins) return ins.error();
  if (!ins.value()) return answer_refused(m);  // a retry: answer with what the first send got
  return stored(p, std::move(m), out);
}

// The chunk's messages, numbered in queue order from their slots, in one insert_messages under
// a savepoint. When it stores every one (the common case: the retries were answered before) the
// seqs stand. Otherwise (a message of the chunk repeats an earlier one's client_msg_id, another
// node stored the same client_msg_id since the lookup, a text PostgreSQL refuses) the savepoint
// undoes the chunk and its messages go one by one, numbered again: a message not stored never
// takes a seq, so seqs stay gapless. A savepoint costs PostgreSQL no round trip (it travels
// with the insert).
void Writer::store_chunk(std::span<Pending> chunk, std::vector<Done>& done) {
  std::vector<Message> msgs(chunk.size());
  std::vector<std::string> files(chunk.size());
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    Pending& p = chunk[i];
    auto& who = p.job->who;
    auto& req = p.job->req;
    Message& m = msgs[i];
    m.conversation_id = req.conversation_id;
    m.seq = ++p.slot->last;
    m.publisher_id = who.user_id;
    m.publisher_name = who.user_name;
    m.type = req.type;
    // Seed 000: a file message's body is the file name.
    m.body = (req.type == MessageType::file && req.body.empty() && p.file) ? p.file->name
                                                                           : std::move(req.body);
    m.client_msg_id = std::move(req.client_msg_id);
    m.ts_ms = now_ms();
    m.file = std::move(p.file);
    m.mentions = std::move(req.mentions);
    files[i] = std::move(req.file_id);
  }
  // The slots back where they were (each ends at its first message's seq - 1): stored() moves
  // them on, message by message.
  for (std::size_t i = chunk.size(); i-- > 0;) chunk[i].slot->last = msgs[i].seq - 1;

  if (!session_->statements_round_trip()) {
    store_chunk_in_process(chunk, msgs, files, done);
    return;
  }

  auto sp = session_->savepoint();
  bool all = false;
  if (sp) {
    auto r = session_->insert_messages(msgs, files);
    all = r && std::all_of(r->begin(), r->end(), [](bool b) { return b; });
    if (all)
      (void)session_->release_savepoint();
    else
      session_->rollback_to_savepoint();
  }
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    Done& d = done[chunk[i].done_index];
    d.send_result = all ? stored(chunk[i], std::move(msgs[i]), d.delivery)
                        : store_one(chunk[i], std::move(msgs[i]), files[i], d.delivery);
  }
}

// In-process (SQLite): no savepoint, whose journal would copy every page the chunk first
// touches (a 4 KiB memcpy each, hundreds a batch) only to be released. insert_messages stores
// what it can and says which it left out (retries, mostly); a message left out did not take
// its seq, so the messages after it in its conversation move down to close the gap (in
// ascending order: each moves into the seq a refused message or the one before it left free).
// Should that fail, or insert_messages fail after storing some, the batch does not commit.
void Writer::store_chunk_in_process(std::span<Pending> chunk, std::vector<Message>& msgs,
                                    std::vector<std::string>& files, std::vector<Done>& done) {
  auto fail_all = [&](const Error& e) {
    batch_failed_ = e;
    for (auto& p : chunk) done[p.done_index].send_result = Result<SendAck>(e);
  };
  auto r = session_->insert_messages(msgs, files);
  if (!r) return fail_all(r.error());
  auto& stored_rows = r.value();
  if (!std::all_of(stored_rows.begin(), stored_rows.end(), [](bool b) { return b; })) {
    std::unordered_map<SeqSlot*, Seq> next;  // a conversation's next seq, for the chunk's slots
    for (std::size_t i = 0; i < chunk.size(); ++i) next.emplace(chunk[i].slot, msgs[i].seq);
    for (std::size_t i = 0; i < chunk.size(); ++i) {
      if (!stored_rows[i]) continue;
      Seq& want = next[chunk[i].slot];
      if (msgs[i].seq != want) {
        if (auto st = session_->move_message(msgs[i].conversation_id, msgs[i].seq, want); !st)
          return fail_all(st.error());
        msgs[i].seq = want;
      }
      ++want;
    }
  }
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    Done& d = done[chunk[i].done_index];
    d.send_result =
        stored_rows[i] ? stored(chunk[i], std::move(msgs[i]), d.delivery) : answer_refused(msgs[i]);
  }
}

Result<SendAck> Writer::answer_refused(Message& m) {
  auto prev = session_->find_sent(m.publisher_id, m.client_msg_id);
  if (!prev) return prev.error();
  if (!prev.value())
    return make_error(Errc::internal, "seq " + std::to_string(m.seq) + " of conversation " +
                                          std::to_string(m.conversation_id) + " taken");
  return SendAck{prev.value()->conversation_id, prev.value()->seq, std::move(m.client_msg_id),
                 prev.value()->ts_ms, true};
}

// A run of sends between function jobs. Their conversations are locked already (process()
// locks the whole batch's, ascending) unless a function job came first: then again, as one
// call. Every send is checked, the retries among them are answered with one lookup, and the
// others are numbered in queue order and stored in chunks.
void Writer::process_sends(std::vector<Job>& batch, std::size_t first, std::size_t last,
                           std::vector<Done>& done, const Status& begun) {
  const std::size_t base = done.size();
  for (std::size_t k = first; k < last; ++k) {
    auto& s = std::get<SendJob>(batch[k]);
    Done d;
    d.send_done = std::move(s.done);
    d.shard = s.shard;
    if (!begun) d.send_result = Result<SendAck>(begun.error());
    done.push_back(std::move(d));
  }
  if (!begun) return;

  std::vector<ConversationId> ids;
  ids.reserve(last - first);
  for (std::size_t k = first; k < last; ++k)
    ids.push_back(std::get<SendJob>(batch[k]).req.conversation_id);
  const Status locked = lock_slots(std::move(ids));

  std::vector<Pending> pending;
  pending.reserve(last - first);
  for (std::size_t k = first; k < last; ++k) {
    const std::size_t at = base + (k - first);
    auto p = check_send(std::get<SendJob>(batch[k]), locked);
    if (!p) {
      done[at].send_result = Result<SendAck>(p.error());
      continue;
    }
    p->done_index = at;
    pending.push_back(std::move(p.value()));
  }

  // Retries: a client_msg_id this publisher stored already gets what the first send got. Where
  // a statement costs a round trip, one lookup answers them all before the insert; in-process
  // (SQLite) the insert finds each retry as cheaply, and a chunk with one goes one by one.
  std::vector<SentKey> keys;
  std::vector<std::size_t> keyed;  // index in pending of keys[i]
  const bool look_up = session_->statements_round_trip();
  for (std::size_t i = 0; look_up && i < pending.size(); ++i) {
    auto& req = pending[i].job->req;
    if (req.client_msg_id.empty()) continue;
    keys.push_back(SentKey{pending[i].job->who.user_id, req.client_msg_id});
    keyed.push_back(i);
  }
  if (!keys.empty()) {
    auto found = session_->find_sent_many(keys);
    if (!found) {
      for (auto& p : pending) done[p.done_index].send_result = Result<SendAck>(found.error());
      return;
    }
    std::vector<bool> answered(pending.size(), false);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto& ref = found.value()[i];
      if (!ref) continue;
      Pending& p = pending[keyed[i]];
      done[p.done_index].send_result = SendAck{
          ref->conversation_id, ref->seq, std::move(p.job->req.client_msg_id), ref->ts_ms, true};
      answered[keyed[i]] = true;
    }
    std::size_t n = 0;
    for (std::size_t i = 0; i < pending.size(); ++i)
      if (!answered[i]) pending[n++] = std::move(pending[i]);
    pending.resize(n);
  }

  for (std::size_t off = 0; off < pending.size(); off += kInsertChunk)
    store_chunk(
        std::span<Pending>(pending).subspan(off, std::min(kInsertChunk, pending.size() - off)),
        done);
}

// Inside a function job's savepoint, after its function: each system message takes the next
// seq of its conversation (locked here; the batch's slots were flushed before the function ran,
// and the sends after it lock again) and goes to the members as the function left them.
Status Writer::store_system(std::vector<Message>& msgs,
                            std::vector<std::shared_ptr<Delivery>>& out) {
  for (auto& m : msgs) {
    auto lock = session_->lock_conversation(m.conversation_id);
    if (!lock) return lock.error();
    m.seq = lock->last_seq + 1;
    m.type = MessageType::system;
    m.client_msg_id.clear();
    if (m.ts_ms == 0) m.ts_ms = now_ms();
    auto ins = session_->insert_message(m, "");
    if (!ins) return ins.error();
    if (!ins.value())
      return make_error(Errc::internal, "seq " + std::to_string(m.seq) + " of conversation " +
                                            std::to_string(m.conversation_id) + " taken");
    if (auto st = session_->set_last_seq(m.conversation_id, m.seq); !st) return st;
    conv_cache_.erase(m.conversation_id);
    auto info = conversation(m.conversation_id, lock->members_version);
    if (!info) return info.error();
    auto d = std::make_shared<Delivery>();
    d->msg = m;
    d->members = info.value()->members;
    d->members_version = info.value()->members_version;
    out.push_back(std::move(d));
  }
  return ok_status();
}

void Writer::process(std::vector<Job>& batch) {
  const int64_t t0 = mono_us();
  std::vector<Done> done;
  done.reserve(batch.size());
  std::size_t messages = 0;

  auto begun = session_->begin();
  Status seqs_stored = ok_status();
  if (begun) {
    // The batch's conversations are locked in ascending id order before any job runs, in one
    // call: writers of several nodes then always take their row locks in the same order and
    // never deadlock (PostgreSQL would abort one of them after a second). A failure here fails
    // the sends (process_sends tries again for what is not locked).
    std::vector<ConversationId> ids;
    for (auto& job : batch)
      if (auto* s = std::get_if<SendJob>(&job)) ids.push_back(s->req.conversation_id);
    (void)lock_slots(std::move(ids));
  }
  for (std::size_t i = 0; i < batch.size();) {
    if (std::holds_alternative<SendJob>(batch[i])) {
      std::size_t j = i + 1;
      while (j < batch.size() && std::holds_alternative<SendJob>(batch[j])) ++j;
      process_sends(batch, i, j, done, begun);
      i = j;
      continue;
    }
    Done d;
    auto& f = std::get<FnJob>(batch[i++]);
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
      if (d.fn_status && f.system && !f.system->empty())
        d.fn_status = store_system(*f.system, d.system);
      if (d.fn_status) {
        (void)session_->release_savepoint();
      } else {
        session_->rollback_to_savepoint();
        d.system.clear();
      }
      if (f.invalidates != 0) conv_cache_.erase(f.invalidates);
    }
    done.push_back(std::move(d));
  }
  for (auto& d : done)
    if (d.delivery) ++messages;
  std::size_t system_messages = 0;
  for (auto& d : done) system_messages += d.system.size();

  if (begun && seqs_stored && !batch_failed_) seqs_stored = batch_failed_;
  batch_failed_ = ok_status();
  if (begun && seqs_stored) seqs_stored = flush_seqs();
  seqs_.clear();
  // Push (service/push.hpp): the batch's stored messages into the outbox, in their own
  // transaction, so that none is lost to a crash before the push worker has decided them.
  if (push_ && begun && seqs_stored && messages > 0) {
    std::vector<PushRef> refs;
    refs.reserve(messages);
    for (auto& d : done)
      if (d.delivery) refs.push_back(PushRef{d.delivery->msg.conversation_id, d.delivery->msg.seq});
    seqs_stored = session_->push_outbox_add(bus_.node_id(), refs, now_ms());
  }
  Status committed = begun;
  if (begun && !seqs_stored) {
    committed = seqs_stored;
    session_->rollback();
    conv_cache_.clear();
    spdlog::error("store: the batch cannot commit: {}", committed.error().message);
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
  published.reserve(messages + system_messages);
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
      if (committed && d.fn_status)
        for (auto& sys : d.system) {
          metrics_.messages_stored_total.add();
          metrics_.system_messages_total.add();
          published.push_back(std::move(sys));
        }
      d.fn_done(committed ? d.fn_status : committed);
    }
  }
  for (std::size_t i = 0; i < per_shard.size(); ++i)
    if (!per_shard[i].empty())
      hub_.post(static_cast<int>(i), [fns = std::move(per_shard[i])]() mutable {
        for (auto& fn : fns) fn();
      });
  if (push_ && !published.empty()) {
    if (system_messages == 0) {
      push_->enqueue(published);
    } else {  // system messages are never pushed (they have no outbox row)
      std::vector<std::shared_ptr<const Delivery>> pushable;
      for (auto& d : published)
        if (d->msg.type != MessageType::system) pushable.push_back(d);
      if (!pushable.empty()) push_->enqueue(pushable);
    }
  }
  if (!published.empty()) bus_.publish(std::move(published));
  const std::int64_t m0 = mono_us();
  if (session_->maintain())
    metrics_.store_maintain_seconds.observe(static_cast<double>(mono_us() - m0) / 1e6);
}

}  // namespace converge
