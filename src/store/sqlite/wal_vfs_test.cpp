// The WAL-gathering VFS under the conditions it must survive: readers and a checkpointer on other
// connections while a writer commits transactions of every size, and a writer that dies without
// closing.
#include "store/sqlite/wal_vfs.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

namespace {

namespace fs = std::filesystem;

struct Db {
  sqlite3* db = nullptr;
  explicit Db(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                              converge::sqlite_vfs::name()),
              SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    exec(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; "
        "PRAGMA mmap_size=268435456");
  }
  ~Db() { sqlite3_close_v2(db); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
    sqlite3_free(err);
  }
  std::string text(const std::string& sql) {
    std::string out;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) != SQLITE_OK)
      return std::string("prepare: ") + sqlite3_errmsg(db);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    else if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      out = std::string("step: ") + sqlite3_errmsg(db);
    sqlite3_finalize(s);
    return out;
  }
};

fs::path fresh_dir(const char* name) {
  auto dir = fs::path(::testing::TempDir()) / (std::string(name) + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A WAL database with table t, then `txns` transactions, transaction i inserting rows(i) rows
// of 3000 bytes.
template <class Rows>
std::string script(int txns, Rows rows) {
  const std::string v(3000, 'v');
  std::string sql =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; "
      "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT);";
  for (int t = 0; t < txns; ++t) {
    sql += "BEGIN;";
    for (int i = 0; i < rows(t); ++i) sql += "INSERT INTO t(v) VALUES('" + v + "');";
    sql += "COMMIT;";
  }
  return sql;
}

// Transaction t inserts `rows(t)` rows of 3000 bytes and records their count in `totals` in the
// same transaction: a reader's snapshot must always agree with itself. Sizes run from one page
// to past the VFS's 8 MiB buffer, and past the 128 KiB the platform VFS writes per call.
int rows(int t) {
  static const int kSizes[] = {1, 3, 40, 45, 200, 3000, 7, 60};
  return kSizes[t % 8];
}

TEST(SqliteWalVfs, ReadersAndCheckpointsSeeWholeCommitsOnly) {
  auto dir = fresh_dir("converge_vfs_");
  const std::string path = (dir / "t.db").string();
  const auto before = converge::sqlite_vfs::stats();
  {
    Db w(path);
    w.exec(
        "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL); "
        "CREATE TABLE totals(n INTEGER NOT NULL); INSERT INTO totals VALUES(0)");
    std::atomic<bool> stop{false};
    std::atomic<int> reads{0}, mismatches{0};
    std::thread reader([&] {
      Db r(path);
      while (!stop) {
        r.exec("BEGIN");
        auto counted = r.text("SELECT count(*) || '/' || coalesce(sum(length(v)), 0) FROM t");
        auto total = r.text("SELECT n || '/' || (n * 3000) FROM totals");
        r.exec("COMMIT");
        if (counted != total) {
          if (mismatches++ == 0) ADD_FAILURE() << counted << " vs " << total;
        }
        ++reads;
      }
    });
    std::thread checkpointer([&] {
      Db c(path);
      while (!stop) {
        int log = 0, done = 0;
        sqlite3_wal_checkpoint_v2(c.db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
    const std::string v(3000, 'v');
    int n = 0;
    for (int t = 0; t < 48; ++t) {
      w.exec("BEGIN IMMEDIATE");
      for (int i = 0; i < rows(t); ++i) w.exec("INSERT INTO t(v) VALUES('" + v + "')"), ++n;
      w.exec("UPDATE totals SET n = " + std::to_string(n));
      w.exec("COMMIT");
      if (t % 6 == 5) {  // let the WAL start over now and then, as the store's writer does
        int log = 0, done = 0;
        sqlite3_wal_checkpoint_v2(w.db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
      }
    }
    while (reads < 50) std::this_thread::yield();
    stop = true;
    reader.join();
    checkpointer.join();
    EXPECT_EQ(mismatches.load(), 0);
    EXPECT_EQ(w.text("PRAGMA integrity_check"), "ok");
    EXPECT_EQ(w.text("SELECT count(*) FROM t"), std::to_string(n));
  }
  const auto after = converge::sqlite_vfs::stats();
  const auto appends = after.appends - before.appends;
  const auto writes = after.writes - before.writes;
  EXPECT_GT(appends, 20000u);
  EXPECT_LT(writes * 10, appends) << "frames were gathered into few writes";
  // Reopened by a new connection: everything is there.
  Db again(path);
  EXPECT_EQ(again.text("PRAGMA integrity_check"), "ok");
  fs::remove_all(dir);
}

// A commit that returned is in the WAL file even if the process then dies without closing:
// nothing stays buffered past COMMIT.
TEST(SqliteWalVfs, CommitsSurviveAWriterThatDies) {
  auto dir = fresh_dir("converge_vfs_die_");
  const std::string path = (dir / "t.db").string();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    {
      sqlite3* db = nullptr;
      if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                          converge::sqlite_vfs::name()) != SQLITE_OK)
        _exit(2);
      const std::string sql = script(10, [](int) { return 60; });
      if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) _exit(3);
      _exit(0);  // no close, no checkpoint: only the WAL holds the rows
    }
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_GT(fs::file_size(dir / "t.db-wal"), 600u * 3000u);
  Db db(path);
  EXPECT_EQ(db.text("SELECT count(*) FROM t"), "600");
  EXPECT_EQ(db.text("PRAGMA integrity_check"), "ok");
  fs::remove_all(dir);
}

// A spy VFS stacked on top of ours checks the contract SQLite's readers rely on: when
// xShmBarrier returns (the moment the writer publishes its new WAL header), the last frame the
// writer wrote is in the file, as another process would read it.
struct Spy {
  static inline sqlite3_vfs vfs{};
  static inline sqlite3_vfs* below = nullptr;
  static inline sqlite3_io_methods methods{};
  static inline const sqlite3_io_methods* below_methods = nullptr;
  static inline std::string wal_path;
  static inline sqlite3_file* wal_file = nullptr;
  static inline std::mutex mu;
  static inline std::string last;  // the last WAL write's bytes, not yet checked
  static inline sqlite3_int64 last_off = 0;
  static inline std::atomic<int> checked{0}, missing{0};

  static int open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out) {
    int rc = below->xOpen(below, name, f, flags, out);
    if (rc != SQLITE_OK || !f->pMethods) return rc;
    below_methods = f->pMethods;
    methods = *f->pMethods;
    methods.xWrite = write;
    methods.xShmBarrier = barrier;
    f->pMethods = &methods;
    if (flags & SQLITE_OPEN_WAL) {
      std::lock_guard lk(mu);
      wal_path = name;
      wal_file = f;
    }
    return rc;
  }
  static int write(sqlite3_file* f, const void* data, int amt, sqlite3_int64 off) {
    if (f == wal_file && amt > 32) {  // WAL pages (not frame headers, not the WAL header)
      std::lock_guard lk(mu);
      last.assign(static_cast<const char*>(data), static_cast<std::size_t>(amt));
      last_off = off;
    }
    return below_methods->xWrite(f, data, amt, off);
  }
  static void barrier(sqlite3_file* f) {
    below_methods->xShmBarrier(f);
    std::lock_guard lk(mu);
    if (last.empty() || wal_path.empty()) return;
    std::string got(last.size(), '\0');
    int fd = ::open(wal_path.c_str(), O_RDONLY);
    ssize_t n = fd >= 0 ? ::pread(fd, got.data(), got.size(), last_off) : -1;
    if (fd >= 0) ::close(fd);
    ++checked;
    if (n != static_cast<ssize_t>(got.size()) || got != last) ++missing;
    last.clear();
  }
  static const char* name() {
    static std::once_flag once;
    std::call_once(once, [] {
      below = sqlite3_vfs_find(converge::sqlite_vfs::name());
      vfs = *below;
      vfs.zName = "converge-spy";
      vfs.xOpen = open;
      sqlite3_vfs_register(&vfs, 0);
    });
    return "converge-spy";
  }
};

TEST(SqliteWalVfs, FramesAreInTheFileWhenTheHeaderIsPublished) {
  auto dir = fresh_dir("converge_vfs_spy_");
  const std::string path = (dir / "t.db").string();
  sqlite3* db = nullptr;
  ASSERT_EQ(
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, Spy::name()),
      SQLITE_OK);
  const std::string sql = script(20, [](int t) { return 1 + t * 7; });
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close_v2(db);
  EXPECT_GE(Spy::checked.load(), 20);
  EXPECT_EQ(Spy::missing.load(), 0) << "a header was published before its frames were written";
  fs::remove_all(dir);
}

}  // namespace
