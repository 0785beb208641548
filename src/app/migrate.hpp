#pragma once
// `converge migrate`: a single node's data (its SQLite store and its file blobs) moved to what a
// cluster shares (a PostgreSQL database, a shared files dir). docs/operations.md, "Growing from
// one node to a cluster", is the operator's side of it.
#include <string>
#include <vector>

namespace converge {

struct MigrateArgs {
  std::string from;        // the stopped node's data dir (holds converge.db)
  std::string to;          // postgresql://... : an empty database (its schema is created)
  std::string files_from;  // the node's files_dir; empty: <from>/files
  std::string files_to;    // the shared files dir to copy the blobs into; empty: leave them
  std::vector<std::string> unexpected;  // arguments the command does not take (a usage error)
};

// Runs the command, printing what it does. Exit codes: 0 copied, 1 failed (nothing written to
// the database), 2 usage.
int run_migrate(const MigrateArgs& args);

}  // namespace converge
