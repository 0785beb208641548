#pragma once
// In-process bus: a single node hands every publish straight to its own listener.
#include <memory>

#include "bus/bus.hpp"

namespace converge {

std::unique_ptr<Bus> make_local_bus();

}  // namespace converge
