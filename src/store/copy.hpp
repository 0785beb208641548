#pragma once
// Copies a whole store into another, engine to engine, through store.hpp's bulk calls: what
// `converge migrate` runs (a node's SQLite into a cluster's PostgreSQL) and what its tests
// round-trip. Names no engine.
#include <functional>
#include <string>

#include "store/store.hpp"

namespace converge {

struct CopyOptions {
  BatchLimits batch;
  // Called with each batch once the target has taken it: progress, and checks of what the rows
  // name (converge migrate looks for each file's blob). An error stops and undoes the copy.
  std::function<Status(const StoreRows&)> on_batch;
};

// Every row of `from` into `to`, in one transaction on `to`: all or nothing. `to` must hold no
// rows at all: otherwise the result is a conflict and nothing is written (checked inside the
// transaction, so two copies racing into one database cannot both land). Before committing,
// `to`'s counts are checked against the rows exported. Both sessions outside a transaction;
// `from` is read in one snapshot (store.hpp, export_all). Returns the rows copied per table.
Result<StoreCounts> copy_store(StoreSession& from, StoreSession& to, const CopyOptions& opts = {});

// "3 users, 2 conversations, ..." (the tables that have rows; "no rows" for none).
std::string describe_counts(const StoreCounts& c);

}  // namespace converge
