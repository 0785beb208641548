#pragma once
#include <cstdint>

namespace converge {

// Raises this process's open-file limit as far as it may go (to fs.nr_open for root, else to the
// hard limit): every connection is a descriptor. Returns the new soft limit.
uint64_t raise_fd_limit();

// Names the calling thread (at most 15 characters) for top -H, perf and gdb.
void name_this_thread(const char* name);

}  // namespace converge
