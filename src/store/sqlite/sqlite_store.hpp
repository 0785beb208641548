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
};

// Opens (creating if needed) and migrates the database.
Result<std::unique_ptr<Store>> open_sqlite_store(const SqliteOptions& opts);

}  // namespace converge
