#pragma once
// SQLite engine: the embedded default. One file in WAL mode; one writing session (the service's
// writer thread) and any number of reading sessions.
#include <memory>
#include <string>

#include "store/store.hpp"

namespace converge {

struct SqliteOptions {
  std::string path;               // database file
  bool synchronous_full = false;  // false: synchronous=NORMAL (durable across process crashes)
  // WAL frames (pages) past which the writer finishes a checkpoint between transactions so the
  // WAL starts over (8192 x 4 KiB = 32 MiB); the checkpointer is woken every half of that.
  int wal_reset_frames = 8192;
  // Fail (unavailable) when another process has the database open, a running node: for tools
  // that must have it to themselves (converge migrate). Checked before opening it.
  bool fail_if_in_use = false;
};

// Opens (creating if needed) and migrates the database.
Result<std::unique_ptr<Store>> open_sqlite_store(const SqliteOptions& opts);

}  // namespace converge
