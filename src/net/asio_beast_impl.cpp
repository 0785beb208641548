// Asio and Beast compiled once for the whole node (BOOST_*_SEPARATE_COMPILATION): every other
// translation unit includes only declarations, which keeps builds fast on two cores.
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
