#pragma once
// Every point-to-point message tag tessera sends, in one place, as disjoint
// ranges: a message can only be received by the operation it was meant for.
//   [0, 2^28)          halo exchange, 2 per tiling link (reduction, refresh)
//   [2^28, 2^29)       the object gathered on rank 0, one per tile
//   2^29               the optimiser states gathered on rank 0
#include "src/error.h"

namespace tessera::comm::tags {

inline constexpr int kObjectGatherBase = 1 << 28;
inline constexpr int kStateGather = 1 << 29;

inline int halo_reduction(int link) {
  TESSERA_REQUIRE(Error, link >= 0 && 2 * link + 1 < kObjectGatherBase, "tiling link ", link, " has no message tag");
  return 2 * link;
}
inline int halo_refresh(int link) { return halo_reduction(link) + 1; }

inline int object_gather(int tile) {
  TESSERA_REQUIRE(Error, tile >= 0 && kObjectGatherBase + tile < kStateGather, "tile ", tile, " has no message tag");
  return kObjectGatherBase + tile;
}

}  // namespace tessera::comm::tags
