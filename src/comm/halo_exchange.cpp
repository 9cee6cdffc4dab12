#include "src/comm/halo_exchange.h"

#include <algorithm>
#include <chrono>

#include "src/comm/communicator.h"
#include "src/comm/message_tags.h"
#include "src/error.h"
#include "src/ops/halo.h"

namespace tessera::comm {
namespace {

torch::Tensor as_complex_or_real(const torch::Tensor& a) {
  // Parameters live as real (..., 2) views of complex arrays.
  return a.dim() == 4 ? torch::view_as_complex(a) : a;
}

torch::Tensor rect_tensor(const Rect& r) { return torch::tensor({r.y0, r.x0, r.h, r.w}, torch::kInt64).view({1, 4}); }

// Tags: reduction and refresh of the same link must never be confused.
int reduction_tag(int link) { return tags::halo_reduction(link); }
int refresh_tag(int link) { return tags::halo_refresh(link); }

}  // namespace

HaloExchange::HaloExchange(const Tiling& tiling, std::vector<int> local_tiles, std::vector<int> rank_of_tile,
                           std::shared_ptr<Communicator> comm)
    : tiling_(tiling), local_tiles_(std::move(local_tiles)), rank_of_tile_(std::move(rank_of_tile)),
      comm_(std::move(comm)) {
  std::sort(local_tiles_.begin(), local_tiles_.end());
  TESSERA_REQUIRE(Error, static_cast<int>(rank_of_tile_.size()) == tiling.num_tiles(),
                  "rank_of_tile must name a rank for each of the ", tiling.num_tiles(), " tiles");
  const auto& all = tiling.links();
  for (int i = 0; i < static_cast<int>(all.size()); ++i) {
    const HaloLink& l = all[i];
    if (!is_local(l.from) && !is_local(l.to)) continue;
    TESSERA_REQUIRE(Error, (is_local(l.from) && is_local(l.to)) || comm_,
                    "tile ", l.from, " and tile ", l.to, " exchange halos across ranks but no communicator exists");
    links_.push_back({i, l.from, l.to, rect_tensor(l.region.relative_to(tiling.tile(l.from).extent)),
                      rect_tensor(l.region.relative_to(tiling.tile(l.to).extent)), l.region.area()});
  }
}

HaloExchange::~HaloExchange() = default;

bool HaloExchange::is_local(int tile) const {
  return std::binary_search(local_tiles_.begin(), local_tiles_.end(), tile);
}

bool HaloExchange::exchanges(int tile) const {
  for (const Link& l : links_)
    if (l.from == tile || l.to == tile) return true;
  return false;
}

void HaloExchange::start_reduction(const std::map<int, torch::Tensor>& grads) {
  TESSERA_REQUIRE(Error, pending_.empty() && arrived_.empty(), "a halo reduction is already in flight");
  for (const Link& l : links_) {
    if (is_local(l.from)) {
      auto src = as_complex_or_real(grads.at(l.from));
      auto buf = ops::pack_regions(src, l.rect_from.to(src.device()));
      if (is_local(l.to)) {
        arrived_.emplace_back(&l, buf);
      } else {
        pending_.push_back(std::make_unique<Request>(comm_->isend(buf, rank_of_tile_[l.to], reduction_tag(l.index))));
      }
    } else {  // remote halo arriving into a local owner
      auto dst = as_complex_or_real(grads.at(l.to));
      auto buf = torch::empty({l.elements_per_slice * dst.size(0)}, dst.options());
      pending_.push_back(std::make_unique<Request>(comm_->irecv(buf, rank_of_tile_[l.from], reduction_tag(l.index))));
      arrived_.emplace_back(&l, buf);
    }
  }
}

void HaloExchange::finish_reduction(std::map<int, torch::Tensor>& grads) {
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& r : pending_) r->wait();
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  pending_.clear();
  for (auto& [l, buf] : arrived_) {
    auto dst = as_complex_or_real(grads.at(l->to));
    ops::unpack_regions_(dst, buf, l->rect_to.to(dst.device()), /*accumulate=*/true);
  }
  arrived_.clear();
}

void HaloExchange::refresh(std::map<int, torch::Tensor>& arrays) {
  // Owners (link.to) send their updated pixels back to the halo holders (link.from).
  std::vector<std::unique_ptr<Request>> requests;
  std::vector<std::pair<const Link*, torch::Tensor>> incoming;
  for (const Link& l : links_) {
    if (is_local(l.to)) {
      auto src = as_complex_or_real(arrays.at(l.to));
      auto buf = ops::pack_regions(src, l.rect_to.to(src.device()));
      if (is_local(l.from))
        incoming.emplace_back(&l, buf);
      else
        requests.push_back(std::make_unique<Request>(comm_->isend(buf, rank_of_tile_[l.from], refresh_tag(l.index))));
    } else {
      auto dst = as_complex_or_real(arrays.at(l.from));
      auto buf = torch::empty({l.elements_per_slice * dst.size(0)}, dst.options());
      requests.push_back(std::make_unique<Request>(comm_->irecv(buf, rank_of_tile_[l.to], refresh_tag(l.index))));
      incoming.emplace_back(&l, buf);
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& r : requests) r->wait();
  wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  torch::NoGradGuard no_grad;
  for (auto& [l, buf] : incoming) {
    // detach: same storage, but the write is not recorded by autograd.
    auto dst = as_complex_or_real(arrays.at(l->from)).detach();
    ops::unpack_regions_(dst, buf, l->rect_from.to(dst.device()), /*accumulate=*/false);
  }
}

int64_t HaloExchange::remote_elements_per_exchange(int64_t slices) const {
  int64_t n = 0;
  for (const Link& l : links_)
    if (is_local(l.from) && !is_local(l.to)) n += l.elements_per_slice * slices;
  return n;
}

int64_t HaloExchange::remote_elements_per_refresh(int64_t slices) const {
  int64_t n = 0;
  for (const Link& l : links_)
    if (is_local(l.to) && !is_local(l.from)) n += l.elements_per_slice * slices;
  return n;
}

}  // namespace tessera::comm
