#pragma once
// The overlap reduction and halo refresh between tiles (see src/tiling.h for
// why the result is the undecomposed gradient). Tiles held by this process
// exchange by direct copies; tiles on other ranks through the Communicator,
// with non-blocking sends and receives so that compute can overlap them.
#include <map>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "src/tiling.h"

namespace tessera::comm {

class Communicator;
class Request;

class HaloExchange {
 public:
  // local_tiles: tiles this process holds. rank_of_tile: which rank holds each
  // tile. comm may be null when every tile is local.
  HaloExchange(const Tiling& tiling, std::vector<int> local_tiles, std::vector<int> rank_of_tile,
               std::shared_ptr<Communicator> comm);
  ~HaloExchange();

  // Arrays are per local tile: (L, h, w) or (L, h, w, 2) over the tile's extent.
  // Overlap reduction, in two halves: start() posts receives and sends the halo
  // parts that leave this process; finish() waits and adds every incoming halo
  // part into its owner's region. Between them the caller may compute anything
  // that does not touch the halos.
  void start_reduction(const std::map<int, torch::Tensor>& grads);
  void finish_reduction(std::map<int, torch::Tensor>& grads);
  void reduce(std::map<int, torch::Tensor>& grads) {
    start_reduction(grads);
    finish_reduction(grads);
  }
  // Owners copy their values over every halo that holds a copy of their pixels.
  void refresh(std::map<int, torch::Tensor>& arrays);

  // Elements this process sends to other ranks per reduction (its halo parts
  // owned by remote tiles) and per refresh (its owned pixels held in remote
  // halos). Summed over all ranks the two are equal; per rank they differ.
  int64_t remote_elements_per_exchange(int64_t slices) const;
  int64_t remote_elements_per_refresh(int64_t slices) const;
  // Whether a reduction or refresh reads or writes this tile's array (false
  // for a tile without neighbours, such as the only tile of a run).
  bool exchanges(int tile) const;
  // Seconds spent blocked in waits so far (for the pipeline's communication fraction).
  double wait_seconds() const { return wait_seconds_; }

 private:
  struct Link {
    int index;  // position in tiling.links(): the message tag
    int from, to;
    torch::Tensor rect_from, rect_to;  // (1, 4) int64: the region in each tile's array
    int64_t elements_per_slice;
  };
  bool is_local(int tile) const;

  const Tiling& tiling_;
  std::vector<int> local_tiles_, rank_of_tile_;
  std::shared_ptr<Communicator> comm_;
  std::vector<Link> links_;  // only links with at least one local end
  // In-flight reduction state.
  std::vector<std::unique_ptr<Request>> pending_;
  std::vector<std::pair<const Link*, torch::Tensor>> arrived_;
  double wait_seconds_ = 0;
};

}  // namespace tessera::comm
