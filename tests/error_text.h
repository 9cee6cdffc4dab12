#pragma once
// The message of the error a call throws: for tests that check what a user
// is told.
#include <exception>
#include <string>

#include "src/error.h"

template <typename F>
std::string settings_error_of(F&& f) {
  try {
    f();
  } catch (const tessera::SettingsError& e) {
    return e.what();
  }
  return "(no error)";
}

// Any error: a tessera::Error's message, another exception's marked as such,
// or "no exception".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const tessera::Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("non-tessera exception: ") + e.what();
  }
  return "no exception";
}
