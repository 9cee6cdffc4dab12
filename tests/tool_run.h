#pragma once
// Runs the built `tessera` tool with arguments, as a user would, for the CLI tests.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

struct ToolOutput {
  int code;          // exit status, -1 when the tool did not exit normally
  std::string text;  // standard output and error together
};

// TESSERA_TOOL=/path/to/tessera runs the same tests against another build,
// e.g. the code before a fix, to show that its regression test fails there.
inline std::string tool_path() {
  const char* other = std::getenv("TESSERA_TOOL");
  return other && *other ? std::string(other) : std::string(TESSERA_BINARY_DIR) + "/train/tessera";
}

inline ToolOutput run(const std::string& args) {
  const std::string cmd = tool_path() + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string text;
  std::array<char, 4096> buf{};
  while (p && fgets(buf.data(), buf.size(), p)) text += buf.data();
  const int status = p ? pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}
