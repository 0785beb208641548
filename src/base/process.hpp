#pragma once
#include <cstdint>

namespace converge {

// Raises this process's open-file limit as far as it may go (to fs.nr_open for root, else to the
// hard limit): every connection is a descriptor. Returns the new soft limit.
uint64_t raise_fd_limit();

}  // namespace converge
