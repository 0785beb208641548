#pragma once
// The PostgreSQL server that the tests of one binary share (a test helper, not part of the
// engine). Started on first use as ../shared/PEERS.md describes: initdb into a temp folder (as
// user postgres when run as root), pg_ctl on 127.0.0.1 and a free port with fsync off; stopped by
// pg_ctl when the binary's tests end (a GoogleTest Environment), by its PID file, never by name.
//
// CONVERGE_TEST_PG_URL=postgresql://...  use that server instead (databases are created on it
//                                        and dropped after each test).
// CONVERGE_TEST_NO_PG=1                  skip the PostgreSQL cases. Without it, a machine with no
//                                        PostgreSQL binaries fails them, saying so.
// CONVERGE_TEST_PG_BIN=/path/to/bin      another PostgreSQL installation's bin folder.
#include <string>

#include "base/error.hpp"

namespace converge::pgtest {

// Why the PostgreSQL cases are to be skipped (CONVERGE_TEST_NO_PG=1), or empty: they run.
std::string skip_reason();

struct Database {
  std::string name;
  std::string url;  // a libpq connection string
};

// A new, empty database on the shared server (started by the first call).
Result<Database> create_database();
// Drops it, closing whatever connections are left on it.
Status drop_database(const std::string& name);

// Runs `sql` on `url`; the first column of the first row as text ("" without one). For tests
// that look at the server from outside the store: pg_stat_activity, pg_terminate_backend.
Result<std::string> query(const std::string& url, const std::string& sql);

}  // namespace converge::pgtest
