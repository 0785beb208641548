#include "service/device_stream.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "service/service.hpp"

namespace converge {

std::shared_ptr<DeviceStream> DeviceStream::create(Service& svc, Post post, Emit emit,
                                                   Overflow overflow, Backlogged backlogged) {
  return std::shared_ptr<DeviceStream>(new DeviceStream(
      svc, std::move(post), std::move(emit), std::move(overflow), std::move(backlogged)));
}

DeviceStream::DeviceStream(Service& svc, Post post, Emit emit, Overflow overflow,
                           Backlogged backlogged)
    : svc_(svc),
      post_(std::move(post)),
      emit_(std::move(emit)),
      overflow_(std::move(overflow)),
      backlogged_(std::move(backlogged)) {}

void DeviceStream::resume() {
  if (closed_ || waiting_.empty()) return;
  auto ids = std::move(waiting_);
  waiting_.clear();
  for (auto id : ids)
    if (auto it = convs_.find(id); it != convs_.end()) drain(id, it->second);
}

void DeviceStream::start(const SeqMap& positions, const SeqMap& last_seqs, const SeqMap& floors) {
  if (closed_) return;
  started_ = true;
  for (auto& [id, pos] : positions) {
    auto& c = convs_[id];
    c.pos = std::max(c.pos, pos);
  }
  for (auto& [id, last] : last_seqs) {
    auto& c = convs_[id];
    if (c.pos >= 0) {
      c.target = std::max(c.target, last);
    } else {
      // A conversation the device has no cursor for starts with what is stored after the
      // stream opened (what came before is for sync/history): after the floor read before
      // `ready`, everything up to `last` is caught up from the store; a live message that came
      // before this read (so at most `last`) is still the stream's first.
      auto f = floors.find(id);
      Seq from = f != floors.end() ? std::min(f->second, last) : last;
      c.pos = c.held.empty() ? from : std::min(from, c.held.begin()->first - 1);
      c.target = std::max(c.target, last);
    }
  }
  for (auto& [id, c] : convs_) {
    if (c.pos < 0 && !c.held.empty()) c.pos = c.held.begin()->first - 1;
    drain(id, c);
  }
}

void DeviceStream::join(ConversationId id, Seq last_seq) {
  if (closed_ || !started_) return;
  auto& c = convs_[id];
  if (c.pos >= 0) return;  // known already: nothing to set
  c.pos = last_seq;
  if (!c.held.empty()) c.target = std::max(c.target, c.held.rbegin()->first);
  drain(id, c);
}

void DeviceStream::leave(ConversationId id) {
  auto it = convs_.find(id);
  if (it == convs_.end()) return;
  held_total_ -= it->second.held.size();
  waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), id), waiting_.end());
  convs_.erase(it);
}

void DeviceStream::catch_up(const SeqMap& last_seqs) {
  if (closed_ || !started_) return;
  for (auto& [id, last] : last_seqs) {
    auto it = convs_.find(id);
    if (it == convs_.end() || it->second.pos < 0) continue;
    it->second.target = std::max(it->second.target, last);
    drain(id, it->second);
  }
}

void DeviceStream::on_delivery(const std::shared_ptr<const Delivery>& d) {
  if (closed_) return;
  auto id = d->msg.conversation_id;
  auto seq = d->msg.seq;
  auto& c = convs_[id];
  // A conversation the stream did not know at start was joined (or created) since: it is
  // streamed from its first message, filled from the store, whatever order the live path brings
  // (in a cluster, a message can reach this node before the membership notice does) — or, when
  // what comes first is a system message (the one of this member's joining, which reaches the
  // new member before the membership notice does), from that message on: what was said before
  // one joined is history, not live.
  if (started_ && c.pos < 0) c.pos = d->msg.type == MessageType::system ? seq - 1 : 0;
  if (c.pos >= 0 && seq <= c.pos) return;  // duplicate
  if (started_ && !c.filling && c.held.empty() && seq == c.pos + 1) {
    c.pos = seq;  // the common case: in order, nothing pending
    emit_(d);
    return;
  }
  if (c.held.emplace(seq, d).second) ++held_total_;
  if (held_total_ > kMaxHeld) {
    closed_ = true;
    overflow_();
    return;
  }
  if (started_) drain(id, c);
}

void DeviceStream::advance(ConversationId id, Seq seq) {
  if (closed_) return;
  auto& c = convs_[id];
  if (seq <= c.pos) return;
  c.pos = seq;
  if (started_) drain(id, c);
}

void DeviceStream::close() {
  closed_ = true;
  convs_.clear();
}

void DeviceStream::drain(ConversationId id, Conv& c) {
  if (c.filling || c.pos < 0) return;
  while (!c.held.empty()) {
    auto it = c.held.begin();
    if (it->first <= c.pos) {
      c.held.erase(it);
      --held_total_;
      continue;
    }
    if (it->first != c.pos + 1) break;
    c.pos = it->first;
    auto d = std::move(it->second);
    c.held.erase(it);
    --held_total_;
    emit_(d);
  }
  if (c.held.empty() && c.target <= c.pos) return;
  if (backlogged_ && backlogged_()) {
    if (std::find(waiting_.begin(), waiting_.end(), id) == waiting_.end()) waiting_.push_back(id);
    return;
  }
  fill(id, c);
}

void DeviceStream::fill(ConversationId id, Conv& c) {
  c.filling = true;
  svc_.metrics().gap_fills_total.add();
  Seq from = c.pos;
  Seq upto = c.held.empty() ? c.target : c.held.begin()->first - 1;
  std::weak_ptr<DeviceStream> weak = weak_from_this();
  Service* svc = &svc_;
  Post post = post_;
  svc_.run_blocking([svc, post, weak, id, from, upto] {
    auto r = svc->messages_after(id, from, std::min(upto - from, kFillPage));
    std::vector<Message> msgs;
    if (r)
      msgs = std::move(r.value());
    else
      spdlog::warn("gap fill of conversation {} failed: {}", id, r.error().message);
    post([weak, id, msgs = std::move(msgs), from]() mutable {
      if (auto self = weak.lock()) self->on_filled(id, std::move(msgs), from);
    });
  });
}

void DeviceStream::on_filled(ConversationId id, std::vector<Message> msgs, Seq asked_from) {
  if (closed_) return;
  auto it = convs_.find(id);
  if (it == convs_.end()) return;
  auto& c = it->second;
  c.filling = false;
  Seq before = c.pos;
  for (auto& m : msgs) {
    if (m.seq != c.pos + 1) {
      if (m.seq <= c.pos) continue;
      break;
    }
    // A full queue stops the page here; the rest is read again once it drains.
    if (c.pos > before && backlogged_ && backlogged_()) break;
    c.pos = m.seq;
    auto d = std::make_shared<Delivery>();
    d->msg = std::move(m);
    emit_(d);
  }
  if (c.pos == before && c.pos == asked_from) {
    // The store has nothing where a message should be. That is a bug elsewhere; do not stall
    // the device on it: skip to what we hold and say so.
    Seq next = c.held.empty() ? c.target : c.held.begin()->first - 1;
    spdlog::error("conversation {}: seqs {}..{} missing from the store; skipping", id, c.pos + 1,
                  next);
    c.pos = next;
  }
  drain(id, c);
}

}  // namespace converge
