#include "src/comm/gather.h"

#include <cstring>

#include "src/comm/message_tags.h"

namespace tessera::comm {

torch::Tensor gather_owned_regions(Communicator* comm, const Tiling& tiling, const std::vector<int>& rank_of_tile,
                                   const std::map<int, torch::Tensor>& owned, int64_t layers,
                                   const torch::TensorOptions& options) {
  torch::NoGradGuard no_grad;
  const int rank = comm ? comm->rank() : 0;
  const bool root = rank == 0;
  // The tiles' boundaries run from 0 to the object's height and width.
  const int64_t height = tiling.y_bounds().back(), width = tiling.x_bounds().back();
  torch::Tensor full;
  if (root) full = torch::zeros({layers, height, width}, options);
  std::vector<Request> requests;
  std::vector<std::pair<Rect, torch::Tensor>> received;
  for (int k = 0; k < tiling.num_tiles(); ++k) {
    const Rect& region = tiling.tile(k).owned;
    if (region.empty()) continue;
    if (rank_of_tile[k] == rank) {
      const auto it = owned.find(k);
      TESSERA_REQUIRE(Error, it != owned.end(), "gather_owned_regions: rank ", rank, " holds tile ", k,
                      " but was not given its region");
      auto part = it->second.contiguous();
      if (root)
        full.slice(1, region.y0, region.y1()).slice(2, region.x0, region.x1()).copy_(part);
      else
        requests.push_back(comm->isend(part, 0, tags::object_gather(k)));
    } else if (root) {
      auto buf = torch::empty({layers, region.h, region.w}, options);
      requests.push_back(comm->irecv(buf, rank_of_tile[k], tags::object_gather(k)));
      received.emplace_back(region, buf);
    }
  }
  for (auto& r : requests) r.wait();
  for (auto& [region, buf] : received)
    full.slice(1, region.y0, region.y1()).slice(2, region.x0, region.x1()).copy_(buf);
  return full;
}

std::vector<std::string> gather_bytes(Communicator& comm, const std::string& bytes) {
  // Sizes first, so that rank 0 can post receives of the right length.
  auto sizes = torch::zeros({comm.size()}, torch::kInt64);
  sizes[comm.rank()] = static_cast<int64_t>(bytes.size());
  comm.allreduce_sum(sizes).wait();
  if (comm.rank() != 0) {
    auto t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
    if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
    comm.isend(t, 0, tags::kStateGather).wait();
    return {};
  }
  std::vector<torch::Tensor> parts(comm.size());
  std::vector<Request> requests;
  for (int r = 1; r < comm.size(); ++r) {
    parts[r] = torch::empty({sizes[r].item<int64_t>()}, torch::kUInt8);
    requests.push_back(comm.irecv(parts[r], r, tags::kStateGather));
  }
  for (auto& req : requests) req.wait();
  std::vector<std::string> out(comm.size());
  out[0] = bytes;
  for (int r = 1; r < comm.size(); ++r)
    out[r].assign(reinterpret_cast<const char*>(parts[r].data_ptr()), static_cast<size_t>(parts[r].numel()));
  return out;
}

}  // namespace tessera::comm
