#pragma once
// A thin SQLite VFS over the platform's default one that gathers a transaction's WAL appends
// into one write. SQLite writes each WAL frame as two calls (a 24-byte header, then the page):
// a commit that dirties 150 pages cost 300 pwrite calls, a fifth of the writer thread's time.
//
// Contiguous appends to a WAL file are copied into a per-file buffer and written in one call
// before any other VFS call made by the same thread: in particular before xShmBarrier, which
// SQLite calls between writing a commit's frames and publishing the new WAL header to readers,
// so no reader (another connection or process) can see a frame that is not in the file yet.
// Space for buffered frames is reserved when they are buffered (the WAL grows in 1 MiB steps),
// so a full disk fails the xWrite that SQLite checks, not the deferred write.
#include <cstdint>

namespace converge::sqlite_vfs {

// Registers the VFS once (not as the default) and returns its name for sqlite3_open_v2.
const char* name();

struct Stats {
  uint64_t appends = 0;  // WAL writes SQLite asked for and this VFS buffered
  uint64_t writes = 0;   // writes issued to the file for them
};
// This process's totals, for tests and metrics.
Stats stats();

}  // namespace converge::sqlite_vfs
