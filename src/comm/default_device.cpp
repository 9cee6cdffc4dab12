#include "src/comm/default_device.h"

#include <torch/cuda.h>

#include "src/error.h"

namespace tessera::comm {

std::string default_device(int local_rank, int visible_gpus) {
  if (visible_gpus <= 0) return "cpu";
  if (local_rank < visible_gpus) return "cuda:" + std::to_string(local_rank);
  if (visible_gpus == 1) return "cuda:0";
  throw SettingsError(::tessera::detail::concat(
      "LOCAL_RANK=", local_rank, " asks for GPU ", local_rank, " but only ", visible_gpus,
      " GPUs are visible: start at most one rank per GPU on each node, or choose the device "
      "with --device"));
}

std::string default_device(const DistributedEnv& env) {
  return default_device(env.local_rank, static_cast<int>(torch::cuda::device_count()));
}

}  // namespace tessera::comm
