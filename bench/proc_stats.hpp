#pragma once
// Another process's resident memory and CPU time, read from /proc (Linux).
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace converge::bench {

struct ProcSample {
  int64_t rss_bytes = 0;
  double cpu_seconds = 0;  // user + system
  bool ok = false;
};

inline ProcSample sample_process(int pid) {
  ProcSample s;
  if (pid <= 0) return s;
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  int64_t pages_total = 0, pages_rss = 0;
  if (!(statm >> pages_total >> pages_rss)) return s;
  s.rss_bytes = pages_rss * sysconf(_SC_PAGESIZE);
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');  // the command name may contain spaces
  if (close == std::string::npos) return s;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  s.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  s.ok = true;
  return s;
}

}  // namespace converge::bench
