#pragma once
// PostgreSQL engine: the store a cluster shares. Every node opens its own sessions (one libpq
// connection each) on one database; the row lock taken by lock_last_seq serializes the nodes'
// writers per conversation, so seqs stay gapless however many nodes send into it at once.
#include <memory>
#include <string>

#include "store/store.hpp"

namespace converge {

struct PostgresOptions {
  // A libpq connection string: postgresql://user:password@host:port/dbname?... or key=value.
  // Its parameters win over the defaults below, except client_encoding (always UTF8).
  std::string url;
  // Live sessions (connections) this Store opens at most; open_session fails as unavailable
  // beyond it. Every node's sessions count against the server's max_connections (100 by
  // default): the writer, the readers and the migration connection of each node.
  int max_sessions = 32;
  int connect_timeout_s = 5;  // per connection attempt (libpq connect_timeout)
  // A row lock (a conversation's seq, held by another node's writer) waited for longer fails as
  // unavailable instead of stalling the writer without bound; 0 waits forever.
  int lock_timeout_ms = 10000;
  // Data sent and not acknowledged by the server's host for longer: the connection is dead (a
  // crashed host or a cut network, which no error reports). TCP keepalives cover idle sessions.
  int tcp_user_timeout_ms = 10000;
};

// Connects, and applies the schema migrations this database lacks (once, even when several
// nodes start together). Fails as bad_request on a malformed url, unavailable when the server
// cannot be reached.
Result<std::unique_ptr<Store>> open_postgres_store(const PostgresOptions& opts);

}  // namespace converge
