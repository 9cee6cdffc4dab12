#pragma once
// What the launcher (torchrun, or a batch system that sets the same
// variables) tells a process about the job it belongs to.
#include <string>

namespace tessera::comm {

struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // torchrun's static rendezvous: the agent hosts the TCPStore at
  // MASTER_ADDR:MASTER_PORT and every rank (rank 0 included) is a client,
  // under the key prefix "/worker/attempt_<restart_count>/".  Otherwise rank 0
  // hosts the store itself (torch.distributed's env:// rendezvous does the same).
  bool use_agent_store = false;
  int restart_count = 0;

  // Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT,
  // TORCHELASTIC_USE_AGENT_STORE and TORCHELASTIC_RESTART_COUNT.
  // Without RANK and WORLD_SIZE: a single process (the defaults above).
  // Throws tessera::SettingsError, naming the variable and its value, on a
  // malformed or inconsistent value (e.g. RANK=abc, RANK >= WORLD_SIZE,
  // RANK without WORLD_SIZE, a multi-process job without MASTER_ADDR/PORT).
  static DistributedEnv from_environment();

  bool distributed() const { return world_size > 1; }

  // "rank 2/4 (local rank 2), store 127.0.0.1:29500 hosted by rank 0"
  std::string describe() const;
};

}  // namespace tessera::comm
