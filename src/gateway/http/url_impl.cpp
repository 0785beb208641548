// Boost.URL's compiled part, built once (Debian ships it header-only).
#include <boost/url/src.hpp>
