#pragma once
// Another process's resident memory and CPU time, read from /proc (Linux).
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace converge::bench {

struct ProcSample {
  int64_t rss_bytes = 0;
  double cpu_seconds = 0;  // user + system
  bool ok = false;
};

// utime + stime of a /proc/.../stat file, in seconds; -1 when unreadable.
inline double stat_cpu_seconds(const std::string& path) {
  std::ifstream stat(path);
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');  // the command name may contain spaces
  if (close == std::string::npos) return -1;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds of a process's threads, summed by name with any "-N" suffix dropped (net-0 and
// net-1 are "net"). Time the kernel spends in softirq (loopback delivery, much of a network
// benchmark) is charged to threads or not depending on the kernel's IRQ time accounting:
// machine_busy_seconds counts it either way.
inline std::map<std::string, double> thread_cpu_seconds(int pid) {
  std::map<std::string, double> out;
  if (pid <= 0) return out;
  std::error_code ec;
  for (auto& t :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream comm(t.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (auto dash = name.rfind('-');
        dash != std::string::npos && dash + 1 < name.size() &&
        name.find_first_not_of("0123456789", dash + 1) == std::string::npos)
      name.resize(dash);
    double cpu = stat_cpu_seconds((t.path() / "stat").string());
    if (cpu > 0) out[name] += cpu;
  }
  return out;
}

// Seconds the machine's CPUs were busy (everything but idle and iowait), all CPUs together.
inline double machine_busy_seconds() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  uint64_t v[8] = {};
  stat >> cpu;
  for (auto& x : v) stat >> x;
  uint64_t busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];  // user nice system irq softirq steal
  return static_cast<double>(busy) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds of a process and all its descendants (found by their parent pids in /proc/*/stat);
// what children that have exited used is not counted.
inline double tree_cpu_seconds(int root) {
  if (root <= 0) return 0;
  std::map<int, std::vector<int>> children;
  std::map<int, double> cpu;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state;
    int ppid = 0;
    rest >> state >> ppid;
    int pid = std::stoi(name);
    children[ppid].push_back(pid);
    double c = stat_cpu_seconds((e.path() / "stat").string());
    if (c > 0) cpu[pid] = c;
  }
  double total = 0;
  std::vector<int> todo{root};
  while (!todo.empty()) {
    int p = todo.back();
    todo.pop_back();
    total += cpu[p];
    for (int c : children[p]) todo.push_back(c);
  }
  return total;
}

inline ProcSample sample_process(int pid) {
  ProcSample s;
  if (pid <= 0) return s;
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  int64_t pages_total = 0, pages_rss = 0;
  if (!(statm >> pages_total >> pages_rss)) return s;
  s.rss_bytes = pages_rss * sysconf(_SC_PAGESIZE);
  s.cpu_seconds = stat_cpu_seconds("/proc/" + std::to_string(pid) + "/stat");
  if (s.cpu_seconds < 0) return s;
  s.ok = true;
  return s;
}

}  // namespace converge::bench
