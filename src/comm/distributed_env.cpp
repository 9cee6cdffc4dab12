#include "src/comm/distributed_env.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <optional>

#include "src/error.h"

namespace tessera::comm {
namespace {

// An unset or empty variable is "not given" (as in torch's env:// rendezvous).
std::optional<std::string> get_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// The whole value must be a decimal integer within [lo, hi].
int parse_int(const char* name, const std::string& raw, long lo, long hi, const char* expected) {
  const std::string s = trim(raw);
  long value = 0;
  const char* first = s.data();
  const char* last = s.data() + s.size();
  if (first != last && *first == '+') ++first;
  auto [ptr, ec] = std::from_chars(first, last, value);
  TESSERA_REQUIRE(SettingsError, !s.empty() && ec == std::errc() && ptr == last,
                  "environment variable ", name, "='", raw, "' is not an integer (expected ",
                  expected, ")");
  TESSERA_REQUIRE(SettingsError, value >= lo && value <= hi, "environment variable ", name, "=",
                  value, " is out of range (expected ", expected, ")");
  return static_cast<int>(value);
}

bool parse_bool(const char* name, const std::string& raw) {
  std::string s = trim(raw);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "true" || s == "1") return true;
  if (s == "false" || s == "0") return false;
  throw SettingsError(::tessera::detail::concat("environment variable ", name, "='", raw,
                                     "' is not a boolean (expected True or False)"));
}

}  // namespace

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv env;
  const auto rank = get_env("RANK");
  const auto world_size = get_env("WORLD_SIZE");
  if (!rank && !world_size) return env;  // a single process
  TESSERA_REQUIRE(SettingsError, rank && world_size, "environment variable ",
                  rank ? "RANK" : "WORLD_SIZE", " is set but ", rank ? "WORLD_SIZE" : "RANK",
                  " is not: launch with torchrun, or set both (or neither, for one process)");

  env.world_size = parse_int("WORLD_SIZE", *world_size, 1, 1 << 24, "a positive integer");
  env.rank = parse_int("RANK", *rank, 0, 1 << 24, "an integer in [0, WORLD_SIZE)");
  TESSERA_REQUIRE(SettingsError, env.rank < env.world_size, "environment variable RANK=",
                  env.rank, " must be smaller than WORLD_SIZE=", env.world_size);
  if (const auto local_rank = get_env("LOCAL_RANK"))
    env.local_rank = parse_int("LOCAL_RANK", *local_rank, 0, 1 << 24, "a non-negative integer");

  const auto addr = get_env("MASTER_ADDR");
  const auto port = get_env("MASTER_PORT");
  if (env.distributed()) {
    TESSERA_REQUIRE(SettingsError, addr && port, "WORLD_SIZE=", env.world_size, " but ",
                    addr ? "MASTER_PORT" : "MASTER_ADDR",
                    " is not set: launch with torchrun, or set MASTER_ADDR and MASTER_PORT to "
                    "the address and a free port of the host of rank 0");
  }
  if (addr) env.master_addr = trim(*addr);
  if (port) env.master_port = parse_int("MASTER_PORT", *port, 1, 65535, "a port in [1, 65535]");

  if (const auto agent = get_env("TORCHELASTIC_USE_AGENT_STORE"))
    env.use_agent_store = parse_bool("TORCHELASTIC_USE_AGENT_STORE", *agent);
  if (const auto restarts = get_env("TORCHELASTIC_RESTART_COUNT"))
    env.restart_count =
        parse_int("TORCHELASTIC_RESTART_COUNT", *restarts, 0, 1 << 30, "a non-negative integer");
  return env;
}

std::string DistributedEnv::describe() const {
  if (!distributed()) return "a single process";
  return ::tessera::detail::concat("rank ", rank, "/", world_size, " (local rank ", local_rank, "), store ",
                        master_addr, ":", master_port, " hosted by ",
                        use_agent_store ? "the torchrun agent" : "rank 0");
}

}  // namespace tessera::comm
