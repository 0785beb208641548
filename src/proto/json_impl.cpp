// Boost.JSON's compiled part, built once for the whole node (Debian ships it header-only).
#include <boost/json/src.hpp>
