#include "store/sqlite/wal_vfs.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace converge::sqlite_vfs {

namespace {

constexpr const char* kName = "converge";
constexpr int kChunk = 1 << 20;               // the WAL grows (is reserved) in these steps
constexpr std::size_t kMaxBuffer = 8 << 20;   // a larger transaction writes in several calls
constexpr std::size_t kFrameHeader = 24;      // SQLite's WAL frame header
constexpr std::size_t kMaxWrite = 31 * 4096;  // bytes per write call (see flush)

sqlite3_vfs* g_real = nullptr;  // the platform's default VFS
sqlite3_vfs g_vfs;
std::atomic<uint64_t> g_appends{0}, g_writes{0};

// One open file. The platform VFS's own file object follows this struct in the same allocation.
struct File {
  sqlite3_file base;  // pMethods = &g_methods; must be first
  sqlite3_file* real = nullptr;
  bool is_wal = false;
  bool is_db = false;
  const char* name = nullptr;  // the database's name pointer (the connection's own allocation)
  // A WAL file and its connection's database file point at each other: the database file's
  // calls (xShmBarrier above all) write the WAL's buffer out first. Guarded by g_links_mu.
  File* peer = nullptr;
  // WAL only: bytes to write at buf_off, and how much of the file is reserved.
  std::vector<char> buf;
  sqlite3_int64 buf_off = 0;
  sqlite3_int64 reserved = 0;
  bool buffering = false;  // off when no database file could be linked: writes go straight out
};

// Database files by their name pointer, to link each WAL file to its connection's database file.
std::mutex g_links_mu;
std::unordered_map<const char*, File*> g_dbs;

File* as_file(sqlite3_file* f) {
  return reinterpret_cast<File*>(f);
}

// The buffer goes out in pieces the platform VFS takes whole (its unix write handles at most
// 128 KiB - 1 bytes per call). On failure the rest stays buffered for a retry.
int flush(File* f) {
  std::size_t done = 0;
  int rc = SQLITE_OK;
  while (done < f->buf.size()) {
    const std::size_t n = std::min(f->buf.size() - done, kMaxWrite);
    rc = f->real->pMethods->xWrite(f->real, f->buf.data() + done, static_cast<int>(n),
                                   f->buf_off + static_cast<sqlite3_int64>(done));
    if (rc != SQLITE_OK) break;
    g_writes.fetch_add(1, std::memory_order_relaxed);
    done += n;
  }
  f->buf.erase(f->buf.begin(), f->buf.begin() + static_cast<std::ptrdiff_t>(done));
  f->buf_off += static_cast<sqlite3_int64>(done);
  return rc;
}

// Before any call on a file, the WAL frames its connection has buffered go out.
int flush_for(File* f) {
  if (f->is_wal) return flush(f);
  if (f->is_db && f->peer) return flush(f->peer);
  return SQLITE_OK;
}

// --- io methods: each writes buffered frames out first, then forwards ---

int x_close(sqlite3_file* p) {
  File* f = as_file(p);
  int rc = flush_for(f);
  {
    std::lock_guard lk(g_links_mu);
    if (f->peer) f->peer->peer = nullptr;
    f->peer = nullptr;
    if (f->is_db) {
      auto it = g_dbs.find(f->name);
      if (it != g_dbs.end() && it->second == f) g_dbs.erase(it);
    }
  }
  int rc2 = f->real->pMethods->xClose(f->real);
  f->~File();
  return rc != SQLITE_OK ? rc : rc2;
}

// Writes the connection's buffered frames out, then calls the platform file's method.
template <class Method, class... Args>
int forward(sqlite3_file* p, Method sqlite3_io_methods::*method, Args... args) {
  File* f = as_file(p);
  if (int rc = flush_for(f); rc != SQLITE_OK) return rc;
  return (f->real->pMethods->*method)(f->real, args...);
}

int x_read(sqlite3_file* p, void* out, int amt, sqlite3_int64 off) {
  return forward(p, &sqlite3_io_methods::xRead, out, amt, off);
}

// Reserves the file up to `end` (in kChunk steps) so that the deferred write cannot run out of
// space: the platform VFS extends the file now and reports a failure to this xWrite.
int reserve(File* f, sqlite3_int64 end) {
  if (end <= f->reserved) return SQLITE_OK;
  sqlite3_int64 hint = end;
  int rc = f->real->pMethods->xFileControl(f->real, SQLITE_FCNTL_SIZE_HINT, &hint);
  if (rc != SQLITE_OK && rc != SQLITE_NOTFOUND) return rc;
  f->reserved = (end + kChunk - 1) / kChunk * kChunk;
  return SQLITE_OK;
}

int x_write(sqlite3_file* p, const void* data, int amt, sqlite3_int64 off) {
  File* f = as_file(p);
  if (!f->is_wal || !f->buffering) {
    if (int rc = flush_for(f); rc != SQLITE_OK) return rc;
    return f->real->pMethods->xWrite(f->real, data, amt, off);
  }
  const auto n = static_cast<std::size_t>(amt);
  const bool contiguous =
      !f->buf.empty() && off == f->buf_off + static_cast<sqlite3_int64>(f->buf.size());
  if (!contiguous || f->buf.size() + n > kMaxBuffer) {
    if (int rc = flush(f); rc != SQLITE_OK) return rc;
    f->buf_off = off;
  }
  if (int rc = reserve(f, off + amt); rc != SQLITE_OK) return rc;
  const char* c = static_cast<const char*>(data);
  f->buf.insert(f->buf.end(), c, c + n);
  g_appends.fetch_add(1, std::memory_order_relaxed);
  return SQLITE_OK;
}

int x_truncate(sqlite3_file* p, sqlite3_int64 size) {
  File* f = as_file(p);
  if (int rc = flush_for(f); rc != SQLITE_OK) return rc;
  if (f->is_wal) f->reserved = 0;  // re-reserved (and re-measured) by the next write past it
  return f->real->pMethods->xTruncate(f->real, size);
}

int x_sync(sqlite3_file* p, int flags) {
  return forward(p, &sqlite3_io_methods::xSync, flags);
}
int x_file_size(sqlite3_file* p, sqlite3_int64* size) {
  return forward(p, &sqlite3_io_methods::xFileSize, size);
}
int x_lock(sqlite3_file* p, int level) {
  return forward(p, &sqlite3_io_methods::xLock, level);
}
int x_unlock(sqlite3_file* p, int level) {
  return forward(p, &sqlite3_io_methods::xUnlock, level);
}
int x_check_reserved_lock(sqlite3_file* p, int* out) {
  return forward(p, &sqlite3_io_methods::xCheckReservedLock, out);
}

int x_file_control(sqlite3_file* p, int op, void* arg) {
  File* f = as_file(p);
  if (int rc = flush_for(f); rc != SQLITE_OK) return rc;
  if (op == SQLITE_FCNTL_VFSNAME) {
    // Name the stack as SQLite's own shims do ("converge/unix").
    int rc = f->real->pMethods->xFileControl(f->real, op, arg);
    if (rc == SQLITE_OK) {
      char** out = static_cast<char**>(arg);
      char* below = *out;
      *out = sqlite3_mprintf("%s/%z", kName, below);
    }
    return rc;
  }
  return f->real->pMethods->xFileControl(f->real, op, arg);
}

int x_sector_size(sqlite3_file* p) {
  File* f = as_file(p);
  return f->real->pMethods->xSectorSize(f->real);
}

int x_device_characteristics(sqlite3_file* p) {
  File* f = as_file(p);
  return f->real->pMethods->xDeviceCharacteristics(f->real);
}

int x_shm_map(sqlite3_file* p, int region, int size, int extend, void volatile** out) {
  File* f = as_file(p);
  if (int rc = flush_for(f); rc != SQLITE_OK) return rc;
  if (f->real->pMethods->iVersion < 2 || !f->real->pMethods->xShmMap) return SQLITE_IOERR;
  return f->real->pMethods->xShmMap(f->real, region, size, extend, out);
}

int x_shm_lock(sqlite3_file* p, int offset, int n, int flags) {
  File* f = as_file(p);
  if (int rc = flush_for(f); rc != SQLITE_OK) return rc;
  if (f->real->pMethods->iVersion < 2 || !f->real->pMethods->xShmLock) return SQLITE_IOERR;
  return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

// SQLite calls this between writing a commit's frames and publishing the WAL header that makes
// them visible. It cannot report an error: a failed write here (the space is reserved, so an I/O
// error) ends the process rather than let readers see frames that are not in the file. On the
// next start SQLite recovers the WAL up to the last commit that is whole; this one was never
// acknowledged.
void x_shm_barrier(sqlite3_file* p) {
  File* f = as_file(p);
  if (int rc = flush_for(f); rc != SQLITE_OK) {
    if (int again = flush_for(f); again != SQLITE_OK) {
      std::fprintf(stderr, "converge: cannot write the SQLite WAL (error %d); stopping\n", rc);
      std::abort();
    }
  }
  if (f->real->pMethods->iVersion >= 2 && f->real->pMethods->xShmBarrier)
    f->real->pMethods->xShmBarrier(f->real);
}

int x_shm_unmap(sqlite3_file* p, int del) {
  File* f = as_file(p);
  if (int rc = flush_for(f); rc != SQLITE_OK) return rc;
  if (f->real->pMethods->iVersion < 2 || !f->real->pMethods->xShmUnmap) return SQLITE_OK;
  return f->real->pMethods->xShmUnmap(f->real, del);
}

int x_fetch(sqlite3_file* p, sqlite3_int64 off, int amt, void** out) {
  File* f = as_file(p);
  if (f->real->pMethods->iVersion < 3 || !f->real->pMethods->xFetch) {
    *out = nullptr;
    return SQLITE_OK;
  }
  return f->real->pMethods->xFetch(f->real, off, amt, out);
}

int x_unfetch(sqlite3_file* p, sqlite3_int64 off, void* ptr) {
  File* f = as_file(p);
  if (f->real->pMethods->iVersion < 3 || !f->real->pMethods->xUnfetch) return SQLITE_OK;
  return f->real->pMethods->xUnfetch(f->real, off, ptr);
}

const sqlite3_io_methods g_methods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved_lock,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

constexpr std::size_t file_header_size() {
  return (sizeof(File) + 15) / 16 * 16;
}

// --- the VFS: opening wraps the platform's file; everything else goes straight to it ---

int v_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* out, int flags, int* out_flags) {
  auto* f = new (out) File;
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(out) + file_header_size());
  std::memset(f->real, 0, static_cast<std::size_t>(g_real->szOsFile));
  int rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (f->real->pMethods) f->real->pMethods->xClose(f->real);
    f->~File();
    out->pMethods = nullptr;
    return rc;
  }
  f->base.pMethods = &g_methods;
  if (name && (flags & SQLITE_OPEN_MAIN_DB)) {
    f->is_db = true;
    f->name = name;
    std::lock_guard lk(g_links_mu);
    g_dbs[name] = f;
  } else if (name && (flags & SQLITE_OPEN_WAL)) {
    f->is_wal = true;
    f->name = sqlite3_filename_database(name);
    {
      std::lock_guard lk(g_links_mu);
      if (auto it = g_dbs.find(f->name); it != g_dbs.end() && !it->second->peer) {
        f->peer = it->second;
        it->second->peer = f;
        f->buffering = true;
      }
    }
    if (f->buffering) {
      int chunk = kChunk;
      (void)f->real->pMethods->xFileControl(f->real, SQLITE_FCNTL_CHUNK_SIZE, &chunk);
      sqlite3_int64 size = 0;
      if (f->real->pMethods->xFileSize(f->real, &size) == SQLITE_OK) f->reserved = size;
      f->buf.reserve(256 * (4096 + kFrameHeader));
    }
  }
  return SQLITE_OK;
}

int v_delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_real->xDelete(g_real, name, sync_dir);
}
int v_access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_real->xAccess(g_real, name, flags, out);
}
int v_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_real->xFullPathname(g_real, name, n, out);
}
void* v_dl_open(sqlite3_vfs*, const char* name) {
  return g_real->xDlOpen(g_real, name);
}
void v_dl_error(sqlite3_vfs*, int n, char* out) {
  g_real->xDlError(g_real, n, out);
}
void (*v_dl_sym(sqlite3_vfs*, void* h, const char* sym))(void) {
  return g_real->xDlSym(g_real, h, sym);
}
void v_dl_close(sqlite3_vfs*, void* h) {
  g_real->xDlClose(g_real, h);
}
int v_randomness(sqlite3_vfs*, int n, char* out) {
  return g_real->xRandomness(g_real, n, out);
}
int v_sleep(sqlite3_vfs*, int us) {
  return g_real->xSleep(g_real, us);
}
int v_current_time(sqlite3_vfs*, double* out) {
  return g_real->xCurrentTime(g_real, out);
}
int v_get_last_error(sqlite3_vfs*, int n, char* out) {
  return g_real->xGetLastError ? g_real->xGetLastError(g_real, n, out) : 0;
}
int v_current_time_int64(sqlite3_vfs*, sqlite3_int64* out) {
  return g_real->xCurrentTimeInt64(g_real, out);
}

}  // namespace

const char* name() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_real = sqlite3_vfs_find(nullptr);
    g_vfs = sqlite3_vfs{};
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(file_header_size()) + g_real->szOsFile;
    g_vfs.mxPathname = g_real->mxPathname;
    g_vfs.zName = kName;
    g_vfs.xOpen = v_open;
    g_vfs.xDelete = v_delete;
    g_vfs.xAccess = v_access;
    g_vfs.xFullPathname = v_full_pathname;
    g_vfs.xDlOpen = v_dl_open;
    g_vfs.xDlError = v_dl_error;
    g_vfs.xDlSym = v_dl_sym;
    g_vfs.xDlClose = v_dl_close;
    g_vfs.xRandomness = v_randomness;
    g_vfs.xSleep = v_sleep;
    g_vfs.xCurrentTime = v_current_time;
    g_vfs.xGetLastError = v_get_last_error;
    g_vfs.xCurrentTimeInt64 = v_current_time_int64;
    sqlite3_vfs_register(&g_vfs, 0);
  });
  return kName;
}

Stats stats() {
  return Stats{g_appends.load(), g_writes.load()};
}

}  // namespace converge::sqlite_vfs
