#pragma once
// Gathers to rank 0: what rank 0 writes (the whole object, every tile's
// optimiser state) is spread over the ranks during a run. Called by every
// rank, like a collective; ranks other than 0 get an empty answer.
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "src/comm/communicator.h"
#include "src/tiling.h"

namespace tessera::comm {

// The (L, H, W) object of `tiling` on rank 0, from each tile's owned region:
// `owned[k]` is tile k's owned part, (L, owned.h, owned.w), for the tiles this
// rank holds (rank_of_tile[k] == this rank). comm may be null (one process).
torch::Tensor gather_owned_regions(Communicator* comm, const Tiling& tiling, const std::vector<int>& rank_of_tile,
                                   const std::map<int, torch::Tensor>& owned, int64_t layers,
                                   const torch::TensorOptions& options);

// Every rank's bytes on rank 0, indexed by rank (the root's own included);
// an empty vector on other ranks.
std::vector<std::string> gather_bytes(Communicator& comm, const std::string& bytes);

}  // namespace tessera::comm
