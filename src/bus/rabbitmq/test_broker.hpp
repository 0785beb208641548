#pragma once
// The RabbitMQ broker that the tests of one binary share (a test helper, not part of the engine).
// Started on first use as ../shared/PEERS.md describes: a temp folder, free loopback ports for
// AMQP, Erlang distribution, epmd and rabbitmqctl's range, a private epmd started first (so that
// it is ours to stop, by PID), rabbitmq-server, then `rabbitmqctl await_startup` retried every
// second (it fails at once until the node has registered) for up to 60 s while the server lives.
// Stopped when the binary's tests end (a GoogleTest Environment): `rabbitmqctl shutdown`, then the
// server's process group and the epmd by PID if still there; the folder is removed.
//
// CONVERGE_TEST_AMQP_URL=amqp://...   use that broker instead (cases that restart the broker
//                                     are skipped then; queues the tests read are purged).
// CONVERGE_TEST_NO_AMQP=1             skip the RabbitMQ cases. Without it, a machine without
//                                     rabbitmq-server fails them, saying so.
// CONVERGE_TEST_RABBITMQ_BIN=DIR      where rabbitmq-server and rabbitmqctl are
//                                     (default /usr/lib/rabbitmq/bin).
#include <string>
#include <vector>

#include "base/error.hpp"

namespace converge::amqptest {

// Why the RabbitMQ cases are to be skipped (CONVERGE_TEST_NO_AMQP=1), or empty: they run.
std::string skip_reason();

struct Broker {
  std::string url;     // amqp://guest:guest@127.0.0.1:<port>/
  int amqp_port = 0;   // where the engine's sockets connect
  bool owned = false;  // a private broker this process started (rabbitmqctl works on it)
};

// The shared broker, started by the first call.
Result<Broker> broker();

// rabbitmqctl <args> against the private broker (stop_app, start_app, list_queues...): what it
// printed. unavailable with CONVERGE_TEST_AMQP_URL.
Result<std::string> rabbitmqctl(const std::vector<std::string>& args);

}  // namespace converge::amqptest
