#pragma once
// Threads for work that blocks: password hashing, store reads, file I/O. Network threads hand
// such work here and get the result posted back, so a slow disk never stalls a socket.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace converge {

class WorkPool {
 public:
  explicit WorkPool(unsigned threads, const char* thread_name = "work");
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  void post(std::function<void()> fn);
  // Queues `fn` unless `max_queued` tasks are already waiting: a bounded pool refuses work
  // rather than letting it pile up (false: refused, `fn` not run).
  bool try_post(std::function<void()> fn, std::size_t max_queued);
  // Runs what is queued, then joins. Later posts are dropped.
  void stop();

 private:
  void run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace converge
