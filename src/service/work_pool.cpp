#include "service/work_pool.hpp"
#include "base/process.hpp"

#include <spdlog/spdlog.h>

namespace converge {

WorkPool::WorkPool(unsigned threads, const char* thread_name) {
  for (unsigned i = 0; i < threads; ++i)
    threads_.emplace_back([this, thread_name] {
      name_this_thread(thread_name);
      run();
    });
}

WorkPool::~WorkPool() {
  stop();
}

void WorkPool::post(std::function<void()> fn) {
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;
    queue_.push_back(std::move(fn));
  }
  cv_.notify_one();
}

bool WorkPool::try_post(std::function<void()> fn, std::size_t max_queued) {
  {
    std::lock_guard lk(mu_);
    if (stopping_ || queue_.size() >= max_queued) return false;
    queue_.push_back(std::move(fn));
  }
  cv_.notify_one();
  return true;
}

void WorkPool::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void WorkPool::run() {
  for (;;) {
    std::function<void()> fn;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("work pool task threw: {}", e.what());
    }
  }
}

}  // namespace converge
