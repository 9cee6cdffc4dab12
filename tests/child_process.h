#pragma once
// Child processes for the multi-process tests and benchmarks (ranks launched
// directly or through torchrun): start one with its own environment and log,
// wait for several against one deadline, and describe how each ended.
// Header-only and without GoogleTest, so that benchmarks can use it too.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace tessera::child_process {

using Clock = std::chrono::steady_clock;

// What a launcher (torchrun, a batch system) sets: a child inherits none of
// these from this process, only those it is given, so that a test run under
// torchrun does not hand its own rank to the ranks it starts.
inline const std::vector<std::string>& launcher_variables() {
  static const std::vector<std::string> names{
      "RANK",        "WORLD_SIZE",  "LOCAL_RANK",  "LOCAL_WORLD_SIZE", "GROUP_RANK",
      "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT",
      "OMP_NUM_THREADS"};
  return names;
}

// A process started by spawn(); stdout and stderr go to `log`.
struct Child {
  pid_t pid = -1;  // -1: it could not be started
  std::string log;
  std::optional<int> status;  // the waitpid status once it ended
  Clock::time_point ended;
};

// Starts argv[0] (looked up on PATH).  Its environment is this process's
// without launcher_variables() and `also_unset`, plus `env`.  In a process
// group of its own, wait_all() can kill it together with what it starts
// (torchrun's workers), but Ctrl-C in a terminal no longer reaches it.
inline Child spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                   const std::string& log, const std::vector<std::string>& also_unset = {},
                   bool own_process_group = true) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    bool drop = env.count(name) > 0;
    for (const auto& v : launcher_variables()) drop = drop || name == v;
    for (const auto& v : also_unset) drop = drop || name == v;
    if (!drop) env_strings.push_back(entry);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  if (own_process_group) {
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
  }
  Child child;
  child.log = log;
  if (argv.empty() ||
      ::posix_spawnp(&child.pid, args[0], &actions, &attr, args.data(), envp.data()) != 0)
    child.pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return child;
}

// Waits until every child ended or `deadline` passed; children still running
// then are killed (with their process group, when they have their own) and
// keep status == nullopt.
inline void wait_all(const std::vector<Child*>& children,
                     Clock::time_point deadline = Clock::time_point::max()) {
  for (;;) {
    bool running = false;
    for (Child* c : children) {
      if (c->pid <= 0 || c->status) continue;
      int status = 0;
      if (::waitpid(c->pid, &status, WNOHANG) == c->pid) {
        c->status = status;
        c->ended = Clock::now();
      } else {
        running = true;
      }
    }
    if (!running || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (Child* c : children) {
    if (c->pid <= 0 || c->status) continue;
    if (::getpgid(c->pid) == c->pid) ::kill(-c->pid, SIGKILL);
    ::kill(c->pid, SIGKILL);
    int status = 0;
    ::waitpid(c->pid, &status, 0);
  }
}

inline std::string describe_status(const std::optional<int>& status) {
  if (!status) return "still running at the deadline (killed)";
  if (WIFEXITED(*status)) return "exit code " + std::to_string(WEXITSTATUS(*status));
  if (WIFSIGNALED(*status)) return "killed by signal " + std::to_string(WTERMSIG(*status));
  return "status " + std::to_string(*status);
}

inline bool exited_with_failure(const Child& c) {
  return c.status && WIFEXITED(*c.status) && WEXITSTATUS(*c.status) != 0;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A loopback port that nothing listened on a moment ago (for MASTER_PORT).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  const bool bound = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                     ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  if (fd >= 0) ::close(fd);
  return bound ? ntohs(addr.sin_port) : -1;
}

inline std::optional<std::string> find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/usr/local/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = dir + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

inline std::string self_exe() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), static_cast<size_t>(n)) : std::string();
}

}  // namespace tessera::child_process
