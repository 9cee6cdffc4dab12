#pragma once
// Errors a microscopist can act on: every failure of bad input or of a peer
// becomes one of these, with the file, key or rank and what is wrong.
#include <sstream>
#include <stdexcept>
#include <string>

namespace tessera {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Input data that cannot be used (missing key, wrong shape, NaN, ...).
class DataError : public Error {
 public:
  using Error::Error;
};

// A user setting that does not make sense.
class SettingsError : public Error {
 public:
  using Error::Error;
};

// A peer rank that died, hung, or sent something unexpected.
class CommunicationError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}
}  // namespace detail

}  // namespace tessera

// Throws ErrorType with the streamed message when cond is false.
#define TESSERA_REQUIRE(ErrorType, cond, ...)                  \
  do {                                                         \
    if (!(cond)) throw ErrorType(::tessera::detail::concat(__VA_ARGS__)); \
  } while (0)
