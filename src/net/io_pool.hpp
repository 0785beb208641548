#pragma once
// One io_context per network thread (muduo's EventLoopThreadPool). Each connection is pinned to
// one context for its whole life, so its state is touched by one thread only and needs no lock.
#include <boost/asio/io_context.hpp>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace converge {

class IoPool {
 public:
  explicit IoPool(unsigned threads);
  ~IoPool();

  std::size_t size() const { return loops_.size(); }
  boost::asio::io_context& loop(std::size_t i) { return *loops_[i]->ctx; }
  // Round robin over the loops, for placing a new connection.
  std::size_t next_index();

  void start();  // one thread per loop
  void stop();   // stop every loop
  void join();

 private:
  struct Loop {
    std::unique_ptr<boost::asio::io_context> ctx;
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard;
    std::thread thread;
  };
  std::vector<std::unique_ptr<Loop>> loops_;
  std::size_t next_ = 0;
};

}  // namespace converge
