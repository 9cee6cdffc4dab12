#pragma once
// The device a rank computes on when the user names none (`--device`).
#include <string>

#include "src/comm/distributed_env.h"

namespace tessera::comm {

// "cuda:<LOCAL_RANK>" when this LibTorch has CUDA and GPUs are visible (one
// rank per GPU, as torchrun and srun place them), else "cpu".
std::string default_device(const DistributedEnv& env);

// The rule for a given number of visible GPUs: "cpu" without any;
// "cuda:<local_rank>" when that GPU exists; "cuda:0" when exactly one is
// visible (a launcher that hands each rank its own GPU through
// CUDA_VISIBLE_DEVICES). Throws SettingsError when LOCAL_RANK names a GPU
// that is not there and several are.
std::string default_device(int local_rank, int visible_gpus);

}  // namespace tessera::comm
