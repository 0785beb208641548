#include "base/process.hpp"

#include <sys/resource.h>

#include <pthread.h>

#include <fstream>

namespace converge {

void name_this_thread(const char* name) {
  pthread_setname_np(pthread_self(), name);
}

uint64_t raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  uint64_t nr_open = 0;
  std::ifstream("/proc/sys/fs/nr_open") >> nr_open;
  if (nr_open > rl.rlim_max) {
    rlimit want{nr_open, nr_open};
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) return nr_open;  // allowed for root only
  }
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

}  // namespace converge
