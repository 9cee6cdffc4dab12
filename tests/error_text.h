#pragma once
// The message of the SettingsError a call throws, or "(no error)": for tests
// that check what a user is told.
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
