#include "net/io_pool.hpp"
#include "base/process.hpp"

#include <spdlog/spdlog.h>

namespace converge {

IoPool::IoPool(unsigned threads) {
  if (threads == 0) threads = 1;
  for (unsigned i = 0; i < threads; ++i) {
    auto l = std::make_unique<Loop>();
    l->ctx = std::make_unique<boost::asio::io_context>(1);  // concurrency hint: one thread
    l->guard.emplace(l->ctx->get_executor());
    loops_.push_back(std::move(l));
  }
}

IoPool::~IoPool() {
  stop();
  join();
}

std::size_t IoPool::next_index() {
  // Called from the accepting thread only.
  std::size_t i = next_;
  next_ = (next_ + 1) % loops_.size();
  return i;
}

void IoPool::start() {
  for (std::size_t i = 0; i < loops_.size(); ++i) {
    Loop* lp = loops_[i].get();
    lp->thread = std::thread([lp, i] {
      name_this_thread(("net-" + std::to_string(i)).c_str());
      for (;;) {
        try {
          lp->ctx->run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("network loop: uncaught exception: {}", e.what());
        }
      }
    });
  }
}

void IoPool::stop() {
  for (auto& l : loops_) {
    l->guard.reset();
    l->ctx->stop();
  }
}

void IoPool::join() {
  for (auto& l : loops_)
    if (l->thread.joinable()) l->thread.join();
}

}  // namespace converge
