#pragma once
// Another process's resident memory and CPU time, read from /proc (Linux).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace converge::bench {

struct ProcSample {
  int64_t rss_bytes = 0;
  double cpu_seconds = 0;  // user + system
  double user_seconds = 0, system_seconds = 0;
  bool ok = false;
};

// utime and stime of a /proc/.../stat file, in seconds; -1, -1 when unreadable.
inline std::pair<double, double> stat_user_system_seconds(const std::string& path) {
  std::ifstream stat(path);
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  if (close == std::string::npos) return {-1, -1};
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  auto tck = static_cast<double>(sysconf(_SC_CLK_TCK));
  return {static_cast<double>(utime) / tck, static_cast<double>(stime) / tck};
}

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

// What the kernel counted on the established TCP sockets of one server port (tcp_info through
// `ss -ti`, iproute2): the server's side (local port = port) and its clients' side (peer port =
// port), summed over the sockets. Socket writes (send, sendmsg) are not in /proc/<pid>/io's
// wchar, so this is how the bytes a server wrote are counted, whatever call wrote them.
struct WireTotals {
  bool ok = false;
  int server_sockets = 0, client_sockets = 0;
  uint64_t server_bytes_sent = 0, server_bytes_received = 0, server_data_segs_out = 0;
  uint64_t client_bytes_received = 0, client_data_segs_in = 0;
};

inline WireTotals wire_totals(uint16_t port) {
  WireTotals w;
  std::string cmd = "ss -tinH state established '( sport = :" + std::to_string(port) +
                    " or dport = :" + std::to_string(port) + " )' 2>/dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (!f) return w;
  std::string out;
  char buf[1 << 16];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  if (::pclose(f) != 0) return w;
  std::istringstream in(out);
  std::string line;
  int side = 0;  // 1: the server's socket, 2: a client's
  auto field = [](const std::string& l, std::string_view key) -> uint64_t {
    for (std::size_t at = l.find(key); at != std::string::npos; at = l.find(key, at + 1))
      if (at == 0 || l[at - 1] == ' ' || l[at - 1] == '\t')
        return std::strtoull(l.c_str() + at + key.size(), nullptr, 10);
    return 0;
  };
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] != ' ' && line[0] != '\t') {  // Recv-Q Send-Q Local:Port Peer:Port
      std::istringstream t(line);
      std::string rq, sq, local, peer;
      t >> rq >> sq >> local >> peer;
      auto lp = local.substr(local.rfind(':') + 1);
      side = lp == std::to_string(port) ? 1 : 2;
      (side == 1 ? w.server_sockets : w.client_sockets)++;
      continue;
    }
    if (side == 1) {
      uint64_t sent = field(line, "bytes_sent:");
      w.server_bytes_sent += sent ? sent : field(line, "bytes_acked:");
      w.server_bytes_received += field(line, "bytes_received:");
      w.server_data_segs_out += field(line, "data_segs_out:");
    } else if (side == 2) {
      w.client_bytes_received += field(line, "bytes_received:");
      w.client_data_segs_in += field(line, "data_segs_in:");
    }
  }
  w.ok = w.server_sockets > 0;
  return w;
}

inline ProcSample sample_process(int pid) {
  ProcSample s;
  if (pid <= 0) return s;
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  int64_t pages_total = 0, pages_rss = 0;
  if (!(statm >> pages_total >> pages_rss)) return s;
  s.rss_bytes = pages_rss * sysconf(_SC_PAGESIZE);
  auto [user, system] = stat_user_system_seconds("/proc/" + std::to_string(pid) + "/stat");
  if (user < 0) return s;
  s.user_seconds = user;
  s.system_seconds = system;
  s.cpu_seconds = user + system;
  s.ok = true;
  return s;
}

}  // namespace converge::bench
