#include "bus/rabbitmq/test_broker.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

extern char** environ;

namespace converge::amqptest {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

long long ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

std::string tail(const std::filesystem::path& file, std::size_t max_bytes = 3000) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max_bytes ? s.substr(s.size() - max_bytes) : s;
}

// A port a listener can bind now (the kernel's pick for port 0, or `want` if that is free).
// Probed with SO_REUSEADDR, as Erlang's and epmd's listeners bind: without it a port that is only
// some closed connection's TIME_WAIT end reads as taken, and after a benchmark's thousands of
// connections ten free ports in a row were rarely found.
int free_port(int want = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int on = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(want));
  socklen_t len = sizeof a;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

bool accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Starts argv[0] (a path) in its own process group with this environment plus `vars`,
// stdout and stderr appended to `log`. -1 on failure.
pid_t spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& vars,
            const std::string& log) {
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (!vars.count(kv.substr(0, kv.find('=')))) envs.push_back(kv);
  }
  for (auto& [k, v] : vars) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envs) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (auto& s : args) argp.push_back(s.data());
  argp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  pid_t pid = -1;
  if (posix_spawn(&pid, argp[0], &fa, &attr, argp.data(), envp.data()) != 0) pid = -1;
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

// Waits for `pid` up to `timeout`; its exit code, 128+signal, or nullopt while it still runs.
std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -1;  // not our child (any more)
    if (Clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(20ms);
  }
}

// Stops a process group we started: SIGTERM, then SIGKILL after `grace`.
void stop_group(pid_t pid, std::chrono::milliseconds grace) {
  if (pid <= 0) return;
  ::kill(-pid, SIGTERM);
  if (!wait_exit(pid, grace)) {
    ::kill(-pid, SIGKILL);
    wait_exit(pid, 5s);
  }
}

class Server final : public ::testing::Environment {
 public:
  void TearDown() override { stop(); }

  Result<Broker> get() {
    std::lock_guard lk(mu_);
    if (!tried_) {
      tried_ = true;
      auto st = start();
      if (!st) {
        error_ = st.error();
        stop_locked();
      }
    }
    if (error_) return *error_;
    return broker_;
  }

  Result<std::string> ctl(const std::vector<std::string>& args) {
    std::lock_guard lk(mu_);
    if (!broker_.owned)
      return make_error(Errc::unavailable, "not a private broker (CONVERGE_TEST_AMQP_URL)");
    const std::string out = dir_ + "/ctl.out";
    std::filesystem::remove(out);
    if (auto st = ctl_locked(args, 60s, out); !st) return st.error();
    return tail(out, 1 << 20);
  }

 private:
  Status ctl_locked(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                    std::string log = {}) {
    std::vector<std::string> argv = {bin_ + "/rabbitmqctl"};
    argv.insert(argv.end(), args.begin(), args.end());
    if (log.empty()) log = dir_ + "/ctl.log";
    pid_t pid = spawn(argv, vars_, log);
    if (pid < 0) return make_error(Errc::internal, "cannot start " + argv[0]);
    auto rc = wait_exit(pid, timeout);
    if (!rc) {
      stop_group(pid, 1s);
      return make_error(Errc::unavailable, "rabbitmqctl " + args[0] + ": timed out");
    }
    if (*rc != 0)
      return make_error(Errc::unavailable, "rabbitmqctl " + args[0] + " exited with " +
                                               std::to_string(*rc) + ":\n" + tail(log, 1000));
    return ok_status();
  }

  Status start() {
    const auto t0 = Clock::now();
    if (auto url = env("CONVERGE_TEST_AMQP_URL"); !url.empty()) {
      broker_.url = url;
      auto at = url.rfind('@');
      auto colon = url.find(':', at == std::string::npos ? url.find("://") + 3 : at);
      broker_.amqp_port = colon == std::string::npos ? 5672 : std::atoi(url.c_str() + colon + 1);
      return ok_status();
    }
    bin_ = env("CONVERGE_TEST_RABBITMQ_BIN");
    if (bin_.empty()) bin_ = "/usr/lib/rabbitmq/bin";
    if (!std::filesystem::exists(bin_ + "/rabbitmq-server"))
      return make_error(Errc::unavailable,
                        "RabbitMQ is not installed here (" + bin_ +
                            "/rabbitmq-server is missing): run `scripts/install-deps.sh test`, or "
                            "point CONVERGE_TEST_AMQP_URL at a running broker, or set "
                            "CONVERGE_TEST_NO_AMQP=1 to skip the RabbitMQ cases");
    std::string epmd = "/usr/bin/epmd";
    if (!std::filesystem::exists(epmd)) {
      for (auto& e : std::filesystem::directory_iterator("/usr/lib/erlang"))
        if (std::filesystem::exists(e.path() / "bin/epmd")) epmd = (e.path() / "bin/epmd").string();
    }

    std::string tmpl = (std::filesystem::temp_directory_path() / "converge_amqp_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) return make_error(Errc::internal, "mkdtemp failed");
    dir_ = tmpl;
    std::filesystem::create_directories(dir_ + "/home");

    const int amqp = free_port();
    const int dist = free_port();
    const int epmd_port = free_port();
    int ctl_min = -1;  // ten free ports in a row for rabbitmqctl's own Erlang node
    for (int attempt = 0; attempt < 20 && ctl_min < 0; ++attempt) {
      int base = free_port();
      bool all = base > 0 && base < 65000;
      for (int p = base + 1; all && p < base + 10; ++p) all = free_port(p) == p;
      if (all) ctl_min = base;
    }
    if (amqp <= 0 || dist <= 0 || epmd_port <= 0 || ctl_min <= 0)
      return make_error(Errc::internal, "no free ports");
    {
      std::ofstream conf(dir_ + "/rabbitmq.conf");
      conf << "listeners.tcp.default = 127.0.0.1:" << amqp << "\n"
           << "loopback_users.guest = true\n";
      std::ofstream(dir_ + "/enabled_plugins") << "[].\n";
    }
    vars_ = {
        {"HOME", dir_ + "/home"},
        {"LC_ALL", "C.UTF-8"},
        {"RABBITMQ_NODENAME", "rabbit@localhost"},
        {"RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1"},
        {"RABBITMQ_NODE_PORT", std::to_string(amqp)},
        {"RABBITMQ_DIST_PORT", std::to_string(dist)},
        {"ERL_EPMD_ADDRESS", "127.0.0.1"},
        {"ERL_EPMD_PORT", std::to_string(epmd_port)},
        {"RABBITMQ_MNESIA_BASE", dir_ + "/mnesia"},
        {"RABBITMQ_LOG_BASE", dir_ + "/log"},
        {"RABBITMQ_ENABLED_PLUGINS_FILE", dir_ + "/enabled_plugins"},
        {"RABBITMQ_CONFIG_FILE", dir_ + "/rabbitmq.conf"},
        {"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}"},
        {"RABBITMQ_CTL_DIST_PORT_MIN", std::to_string(ctl_min)},
        {"RABBITMQ_CTL_DIST_PORT_MAX", std::to_string(ctl_min + 9)},
    };

    // Our own epmd, in the foreground: the broker finds it on its port and starts none, so
    // nothing is left behind as a daemon.
    epmd_pid_ = spawn({epmd, "-address", "127.0.0.1", "-port", std::to_string(epmd_port)}, vars_,
                      dir_ + "/epmd.log");
    if (epmd_pid_ < 0) return make_error(Errc::internal, "cannot start " + epmd);
    for (int i = 0; i < 250 && !accepts(epmd_port); ++i) std::this_thread::sleep_for(20ms);
    if (!accepts(epmd_port))
      return make_error(Errc::internal, "epmd did not listen:\n" + tail(dir_ + "/epmd.log"));

    server_pid_ = spawn({bin_ + "/rabbitmq-server"}, vars_, dir_ + "/server.log");
    if (server_pid_ < 0) return make_error(Errc::internal, "cannot start rabbitmq-server");
    const auto until = Clock::now() + 60s;
    for (;;) {
      if (auto rc = wait_exit(server_pid_, 0ms)) {
        server_pid_ = -1;
        return make_error(Errc::internal, "rabbitmq-server exited with " + std::to_string(*rc) +
                                              ":\n" + tail(dir_ + "/server.log"));
      }
      if (ctl_locked({"await_startup", "--timeout", "60"}, 65s)) break;
      if (Clock::now() >= until)
        return make_error(Errc::internal,
                          "RabbitMQ did not start within 60 s:\n" + tail(dir_ + "/server.log"));
      std::this_thread::sleep_for(1s);
    }
    broker_.url = "amqp://guest:guest@127.0.0.1:" + std::to_string(amqp) + "/";
    broker_.amqp_port = amqp;
    broker_.owned = true;
    std::fprintf(stderr, "[amqptest] RabbitMQ on 127.0.0.1:%d in %s, up in %lld ms\n", amqp,
                 dir_.c_str(), ms_since(t0));
    return ok_status();
  }

  void stop() {
    std::lock_guard lk(mu_);
    stop_locked();
  }

  void stop_locked() {
    const auto t0 = Clock::now();
    const bool had_server = server_pid_ > 0;
    if (server_pid_ > 0) {
      if (!ctl_locked({"shutdown"}, 30s))
        std::fprintf(stderr, "[amqptest] rabbitmqctl shutdown failed; stopping it by PID\n");
      if (!wait_exit(server_pid_, 10s)) stop_group(server_pid_, 5s);
      server_pid_ = -1;
    }
    if (epmd_pid_ > 0) {
      stop_group(epmd_pid_, 2s);
      epmd_pid_ = -1;
    }
    if (had_server) std::fprintf(stderr, "[amqptest] RabbitMQ stopped in %lld ms\n", ms_since(t0));
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
    broker_.owned = false;
  }

  std::mutex mu_;
  bool tried_ = false;
  std::optional<Error> error_;  // why the broker could not be had: every case reports it
  Broker broker_;
  std::string bin_;                          // rabbitmq-server and rabbitmqctl
  std::string dir_;                          // temp folder: home, mnesia, logs, config
  std::map<std::string, std::string> vars_;  // the environment of the server and of rabbitmqctl
  pid_t server_pid_ = -1;                    // rabbitmq-server (its group holds the Erlang VM)
  pid_t epmd_pid_ = -1;
};

Server& server() {
  // Registered with GoogleTest before main runs, so that its TearDown stops the broker.
  static Server* const s = [] {
    auto* e = new Server;
    ::testing::AddGlobalTestEnvironment(e);
    return e;
  }();
  return *s;
}
[[maybe_unused]] Server& registered = server();

}  // namespace

std::string skip_reason() {
  return env("CONVERGE_TEST_NO_AMQP") == "1" ? "CONVERGE_TEST_NO_AMQP=1: RabbitMQ cases skipped"
                                             : "";
}

Result<Broker> broker() {
  return server().get();
}

Result<std::string> rabbitmqctl(const std::vector<std::string>& args) {
  return server().ctl(args);
}

}  // namespace converge::amqptest
