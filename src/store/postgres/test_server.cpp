#include "store/postgres/test_server.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>

namespace converge::pgtest {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

int shell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return rc == -1 ? -1 : WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

std::string tail(const std::filesystem::path& file, std::size_t max_bytes = 2000) {
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max_bytes ? s.substr(s.size() - max_bytes) : s;
}

// A port nothing listens on now (the kernel's pick for port 0). Another process may take it
// before the server binds it: start() tries again then.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

// A value for a key=value connection string.
std::string quoted(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

using Conn = std::unique_ptr<PGconn, decltype(&PQfinish)>;

Result<Conn> connect(const std::string& url) {
  Conn c(PQconnectdb(url.c_str()), &PQfinish);
  if (!c || PQstatus(c.get()) != CONNECTION_OK)
    return make_error(Errc::unavailable, "cannot connect to " + url + ": " +
                                             (c ? PQerrorMessage(c.get()) : "out of memory"));
  return c;
}

Result<std::string> run(PGconn* c, const std::string& sql) {
  std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(c, sql.c_str()), &PQclear);
  auto st = PQresultStatus(r.get());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    return make_error(Errc::internal, sql + ": " + PQerrorMessage(c));
  if (st == PGRES_TUPLES_OK && PQntuples(r.get()) > 0 && PQnfields(r.get()) > 0)
    return std::string(PQgetvalue(r.get(), 0, 0));
  return std::string();
}

class Server final : public ::testing::Environment {
 public:
  void TearDown() override { stop(); }

  // The connection string of a database `name` on the server, started by the first call.
  Result<std::string> url_for(const std::string& name) {
    std::lock_guard lk(mu_);
    if (auto st = ensure_started(); !st) return st.error();
    return base_ + " dbname=" + quoted(name);
  }

  // Runs SQL on the server's admin connection (CREATE / DROP DATABASE).
  Result<std::string> admin(const std::string& sql) {
    std::lock_guard lk(mu_);
    if (auto st = ensure_started(); !st) return st.error();
    if (!admin_ || PQstatus(admin_.get()) != CONNECTION_OK) {
      auto c = connect(admin_url_);
      if (!c) return c.error();
      admin_ = std::move(c.value());
    }
    return run(admin_.get(), sql);
  }

 private:
  Status ensure_started() {
    if (!tried_) {
      tried_ = true;
      auto st = start();
      if (!st) error_ = st.error();
    }
    if (error_) return *error_;
    return ok_status();
  }

  Status start() {
    const auto t0 = std::chrono::steady_clock::now();
    if (auto url = env("CONVERGE_TEST_PG_URL"); !url.empty()) {
      // Every parameter of the url but its database, which each test chooses.
      char* err = nullptr;
      PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
      if (!opts) {
        std::string m = err ? err : "out of memory";
        PQfreemem(err);
        return make_error(Errc::bad_request, "CONVERGE_TEST_PG_URL: " + m);
      }
      for (auto* o = opts; o->keyword; ++o)
        if (o->val && *o->val && std::string(o->keyword) != "dbname")
          base_ += std::string(base_.empty() ? "" : " ") + o->keyword + "=" + quoted(o->val);
      PQconninfoFree(opts);
      admin_url_ = url;
      return ok_status();
    }

    std::string bin = env("CONVERGE_TEST_PG_BIN");
    if (bin.empty()) bin = "/usr/lib/postgresql/15/bin";
    if (!std::filesystem::exists(bin + "/initdb"))
      return make_error(Errc::unavailable,
                        "PostgreSQL is not installed here (" + bin +
                            "/initdb is missing): run `scripts/install-deps.sh test`, or point "
                            "CONVERGE_TEST_PG_URL at a running server, or set "
                            "CONVERGE_TEST_NO_PG=1 to skip the PostgreSQL cases");

    std::string tmpl = (std::filesystem::temp_directory_path() / "converge_pg_XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) return make_error(Errc::internal, "mkdtemp failed");
    dir_ = tmpl;
    // initdb refuses to run as root: the server runs as user postgres, which owns the folder.
    std::string as_user;
    if (::geteuid() == 0) {
      passwd* pw = ::getpwnam("postgres");
      if (!pw) return make_error(Errc::internal, "no user postgres to run PostgreSQL as");
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
        return make_error(Errc::internal, "cannot chown " + dir_);
      as_user = "runuser -u postgres -- ";
    }
    pg_ctl_ = as_user + bin + "/pg_ctl -D " + dir_ + "/data";
    if (shell(as_user + bin + "/initdb -D " + dir_ + "/data -A trust -U postgres --no-sync " +
              "-E UTF8 --locale=C >" + dir_ + "/initdb.log 2>&1") != 0)
      return make_error(Errc::internal,
                        "initdb failed:\n" + tail(std::filesystem::path(dir_) / "initdb.log"));
    // Durability is not what these tests are about: no fsync, no full-page images.
    for (int attempt = 0; attempt < 5; ++attempt) {
      const int port = free_port();
      if (port <= 0) return make_error(Errc::internal, "no free port");
      const std::string opts = "-c listen_addresses=127.0.0.1 -p " + std::to_string(port) + " -k " +
                               dir_ +
                               " -c fsync=off -c synchronous_commit=off -c full_page_writes=off";
      if (shell(pg_ctl_ + " -l " + dir_ + "/pg.log -o '" + opts + "' -w -t 60 start >" + dir_ +
                "/pg_ctl.log 2>&1") == 0) {
        running_ = true;
        base_ = "host=127.0.0.1 port=" + std::to_string(port) + " user=postgres";
        admin_url_ = base_ + " dbname=postgres";
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - t0)
                            .count();
        std::fprintf(stderr, "[pgtest] PostgreSQL on 127.0.0.1:%d in %s, up in %lld ms\n", port,
                     dir_.c_str(), static_cast<long long>(ms));
        return ok_status();
      }
    }
    return make_error(Errc::internal,
                      "pg_ctl start failed:\n" + tail(std::filesystem::path(dir_) / "pg.log"));
  }

  void stop() {
    std::lock_guard lk(mu_);
    admin_.reset();
    if (running_) {
      const auto t0 = std::chrono::steady_clock::now();
      if (shell(pg_ctl_ + " -m fast -w stop >>" + dir_ + "/pg_ctl.log 2>&1") != 0)
        std::fprintf(stderr, "[pgtest] pg_ctl stop failed; the server's files stay in %s\n",
                     dir_.c_str());
      else
        std::fprintf(stderr, "[pgtest] PostgreSQL stopped in %lld ms\n",
                     static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::steady_clock::now() - t0)
                                                .count()));
      running_ = false;
    }
    if (!dir_.empty() && !running_) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
      dir_.clear();
    }
  }

  std::mutex mu_;
  bool tried_ = false;
  std::optional<Error> error_;  // why the server could not be had: every PG case reports it
  bool running_ = false;        // a private server we started and must stop
  std::string dir_;             // its temp folder: data/, logs, socket
  std::string pg_ctl_;          // "[runuser -u postgres --] .../pg_ctl -D dir/data"
  std::string base_;            // connection parameters but the database
  std::string admin_url_;       // where CREATE DATABASE runs
  Conn admin_{nullptr, &PQfinish};
};

Server& server() {
  // Registered with GoogleTest before main runs, so that its TearDown stops the server.
  static Server* const s = [] {
    auto* env = new Server;
    ::testing::AddGlobalTestEnvironment(env);
    return env;
  }();
  return *s;
}
// The Environment must be registered before RUN_ALL_TESTS, not on first use.
[[maybe_unused]] Server& registered = server();

}  // namespace

std::string skip_reason() {
  return env("CONVERGE_TEST_NO_PG") == "1" ? "CONVERGE_TEST_NO_PG=1: PostgreSQL cases skipped" : "";
}

Result<Database> create_database() {
  static int n = 0;
  Database db;
  db.name = "converge_t" + std::to_string(::getpid()) + "_" + std::to_string(n++);
  if (auto r = server().admin("CREATE DATABASE " + db.name); !r) return r.error();
  auto url = server().url_for(db.name);
  if (!url) return url.error();
  db.url = std::move(url.value());
  return db;
}

Status drop_database(const std::string& name) {
  if (auto r = server().admin("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); !r)
    return r.error();
  return ok_status();
}

Result<std::string> query(const std::string& url, const std::string& sql) {
  auto c = connect(url);
  if (!c) return c.error();
  return run(c.value().get(), sql);
}

}  // namespace converge::pgtest
