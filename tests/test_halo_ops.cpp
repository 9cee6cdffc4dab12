// Tests of tessera::pack_regions / unpack_regions / unpack_regions_
// (src/ops/halo.h): against tensor slicing, adjointness, gradients, errors, and
// CUDA against CPU where a GPU exists.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>
#include <string>
#include <vector>

#include "src/error.h"
#include "src/ops/halo.h"
#include "tests/error_text.h"
#include "tests/gradcheck.h"
#include "tests/require_cuda.h"

namespace {

using tessera::ops::pack_regions;
using tessera::ops::packed_size;
using tessera::ops::unpack_regions;
using tessera::ops::unpack_regions_;

const std::vector<torch::ScalarType> kAllDtypes = {torch::kFloat, torch::kDouble,
                                                   torch::kComplexFloat, torch::kComplexDouble};

torch::Tensor random_data(torch::IntArrayRef shape, torch::ScalarType dtype, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn(shape, gen, torch::TensorOptions().dtype(dtype));
}

// Halo-like rects of a 3 x 17 x 13 array: edges, a corner, an empty rect and a
// full-width band; none overlap.
torch::Tensor sample_rects() {
  return torch::tensor({{0, 0, 2, 13},    // top band, full width
                        {15, 0, 2, 13},   // bottom band
                        {2, 0, 13, 3},    // left edge
                        {2, 11, 13, 2},   // right edge
                        {5, 5, 0, 4},     // empty
                        {6, 4, 4, 6}},    // interior block
                       torch::kLong);
}

// Reference pack by slicing: blocks (L, h, w) flattened and concatenated.
torch::Tensor reference_pack(const torch::Tensor& array, const torch::Tensor& rects) {
  std::vector<torch::Tensor> blocks;
  for (int64_t r = 0; r < rects.size(0); ++r) {
    const auto y0 = rects[r][0].item<int64_t>(), x0 = rects[r][1].item<int64_t>();
    const auto h = rects[r][2].item<int64_t>(), w = rects[r][3].item<int64_t>();
    blocks.push_back(array.slice(1, y0, y0 + h).slice(2, x0, x0 + w).reshape({-1}));
  }
  return torch::cat(blocks);
}

torch::Tensor reference_unpack(const torch::Tensor& array, const torch::Tensor& buffer,
                               const torch::Tensor& rects, bool accumulate) {
  auto out = array.clone();
  const int64_t L = array.size(0);
  int64_t offset = 0;
  for (int64_t r = 0; r < rects.size(0); ++r) {
    const auto y0 = rects[r][0].item<int64_t>(), x0 = rects[r][1].item<int64_t>();
    const auto h = rects[r][2].item<int64_t>(), w = rects[r][3].item<int64_t>();
    auto region = out.slice(1, y0, y0 + h).slice(2, x0, x0 + w);
    auto block = buffer.slice(0, offset, offset + L * h * w).view({L, h, w});
    if (accumulate)
      region.add_(block);
    else
      region.copy_(block);
    offset += L * h * w;
  }
  return out;
}

// See test_ops.cpp: a NaN block for the next allocation of that size.
void poison_next_allocation(int64_t numel, torch::ScalarType dtype, torch::Device device) {
  auto t = torch::empty({numel}, torch::TensorOptions().dtype(dtype).device(device));
  t.fill_(std::numeric_limits<double>::quiet_NaN());
}

TEST(HaloOps, PackedSize) {
  EXPECT_EQ(packed_size(sample_rects(), 3), 3 * (26 + 26 + 39 + 26 + 0 + 24));
  EXPECT_EQ(packed_size(torch::zeros({0, 4}, torch::kLong), 3), 0);
}

TEST(HaloOps, PackMatchesSlicingAllDtypes) {
  const auto rects = sample_rects();
  for (auto dtype : kAllDtypes) {
    SCOPED_TRACE(c10::toString(dtype));
    const auto array = random_data({3, 17, 13}, dtype, 1);
    poison_next_allocation(packed_size(rects, 3), dtype, torch::kCPU);
    const auto buffer = pack_regions(array, rects);
    EXPECT_EQ(buffer.dim(), 1);
    EXPECT_EQ(buffer.numel(), packed_size(rects, 3));
    EXPECT_EQ(buffer.scalar_type(), dtype);
    EXPECT_TRUE(torch::equal(buffer, reference_pack(array, rects)));
  }
}

TEST(HaloOps, UnpackMatchesSlicingAllDtypes) {
  const auto rects = sample_rects();
  for (auto dtype : kAllDtypes) {
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + (accumulate ? " accumulate" : " copy"));
      const auto array = random_data({3, 17, 13}, dtype, 2);
      const auto buffer = random_data({packed_size(rects, 3)}, dtype, 3);
      const auto expected = reference_unpack(array, buffer, rects, accumulate);
      const auto out = unpack_regions(array, buffer, rects, accumulate);
      EXPECT_TRUE(torch::equal(out, expected));
      // Out of place: the input is untouched.
      EXPECT_TRUE(torch::equal(array, random_data({3, 17, 13}, dtype, 2)));
      // In place, on a contiguous and on a strided array.
      auto inplace = array.clone();
      unpack_regions_(inplace, buffer, rects, accumulate);
      EXPECT_TRUE(torch::equal(inplace, expected));
      auto storage = array.transpose(1, 2).contiguous();
      auto strided = storage.transpose(1, 2);
      ASSERT_FALSE(strided.is_contiguous());
      unpack_regions_(strided, buffer, rects, accumulate);
      EXPECT_TRUE(torch::equal(strided, expected));
      EXPECT_TRUE(torch::equal(storage.transpose(1, 2), expected));
    }
  }
}

TEST(HaloOps, OverlappingRectsApplyInOrder) {
  const auto rects = torch::tensor({{1, 1, 3, 3}, {2, 2, 3, 3}}, torch::kLong);
  const auto array = random_data({2, 6, 6}, torch::kComplexDouble, 4);
  const auto buffer = random_data({packed_size(rects, 2)}, torch::kComplexDouble, 5);
  for (bool accumulate : {false, true}) {
    EXPECT_TRUE(torch::allclose(unpack_regions(array, buffer, rects, accumulate),
                                reference_unpack(array, buffer, rects, accumulate)));
  }
}

TEST(HaloOps, PackThenUnpackRoundTrip) {
  const auto rects = sample_rects();
  const auto array = random_data({3, 17, 13}, torch::kComplexFloat, 6);
  const auto buffer = pack_regions(array, rects);
  EXPECT_TRUE(torch::equal(unpack_regions(torch::zeros_like(array), buffer, rects, false)
                               .add_(unpack_regions(array, torch::zeros_like(buffer), rects, false)),
                           array));
}

TEST(HaloOps, Adjoint) {
  // <pack(x), y> == <x, unpack(0, y, accumulate)>.
  const auto rects = torch::tensor({{0, 0, 3, 13}, {1, 2, 5, 4}, {10, 9, 7, 4}}, torch::kLong);
  for (auto dtype : kAllDtypes) {
    SCOPED_TRACE(c10::toString(dtype));
    const auto x = random_data({3, 17, 13}, dtype, 7);
    const auto y = random_data({packed_size(rects, 3)}, dtype, 8);
    const auto lhs = (torch::conj(pack_regions(x, rects)).to(torch::kComplexDouble) *
                      y.to(torch::kComplexDouble)).sum();
    const auto rhs = (torch::conj(x).to(torch::kComplexDouble) *
                      unpack_regions(torch::zeros_like(x), y, rects, true).to(torch::kComplexDouble))
                         .sum();
    EXPECT_LE((lhs - rhs).abs().item<double>(), 1e-4);
  }
}

TEST(HaloOpsGrad, PackWrtArray) {
  const auto rects = torch::tensor({{0, 0, 2, 5}, {3, 1, 2, 3}, {2, 2, 3, 3}}, torch::kLong);
  for (auto dtype : {torch::kDouble, torch::kComplexDouble}) {
    SCOPED_TRACE(c10::toString(dtype));
    std::vector<torch::Tensor> in = {random_data({2, 6, 5}, dtype, 9).requires_grad_(), rects};
    const auto r = tessera::testing::gradcheck(
        [](const std::vector<torch::Tensor>& x) { return pack_regions(x[0], x[1]); }, in);
    EXPECT_TRUE(r.passed) << r.message;
  }
}

TEST(HaloOpsGrad, UnpackWrtArrayAndBuffer) {
  const auto rects = torch::tensor({{0, 0, 2, 5}, {3, 1, 2, 3}}, torch::kLong);
  for (auto dtype : {torch::kDouble, torch::kComplexDouble}) {
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + (accumulate ? " accumulate" : " copy"));
      std::vector<torch::Tensor> in = {random_data({2, 6, 5}, dtype, 10).requires_grad_(),
                                       random_data({packed_size(rects, 2)}, dtype, 11)
                                           .requires_grad_(),
                                       rects};
      const auto r = tessera::testing::gradcheck(
          [accumulate](const std::vector<torch::Tensor>& x) {
            return unpack_regions(x[0], x[1], x[2], accumulate);
          },
          in);
      EXPECT_TRUE(r.passed) << r.message;
    }
  }
}

TEST(HaloOpsGrad, PackUnpackChain) {
  // A halo exchange in miniature: pack from one tile, add into another.
  const auto rects = torch::tensor({{0, 0, 2, 5}, {4, 0, 2, 5}}, torch::kLong);
  std::vector<torch::Tensor> in = {random_data({2, 6, 5}, torch::kComplexDouble, 12).requires_grad_(),
                                   random_data({2, 6, 5}, torch::kComplexDouble, 13).requires_grad_(),
                                   rects};
  const auto r = tessera::testing::gradcheck(
      [](const std::vector<torch::Tensor>& x) {
        return unpack_regions(x[1], pack_regions(x[0], x[2]).mul(x[0].sum()), x[2], true);
      },
      in);
  EXPECT_TRUE(r.passed) << r.message;
}

TEST(HaloOpsErrors, RectOutsideArray) {
  const auto array = torch::zeros({2, 8, 9}, torch::kComplexFloat);
  const auto rects = torch::tensor({{0, 0, 2, 9}, {7, 3, 2, 2}}, torch::kLong);
  const auto msg = error_of([&] { pack_regions(array, rects); });
  EXPECT_NE(msg.find("tessera::pack_regions"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rect 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("8 x 9"), std::string::npos) << msg;
  const auto negative = torch::tensor({{-1, 0, 1, 1}}, torch::kLong);
  EXPECT_NE(error_of([&] { pack_regions(array, negative); }).find("rect 0"), std::string::npos);
}

TEST(HaloOpsErrors, WrongDtypesAndSizes) {
  const auto array = torch::zeros({2, 8, 9}, torch::kComplexFloat);
  const auto rects = torch::tensor({{0, 0, 2, 3}}, torch::kLong);
  auto msg = error_of([&] { pack_regions(array, rects.to(torch::kInt)); });
  EXPECT_NE(msg.find("rects must be int64"), std::string::npos) << msg;
  msg = error_of([&] { pack_regions(array, torch::zeros({2, 3}, torch::kLong)); });
  EXPECT_NE(msg.find("(R, 4)"), std::string::npos) << msg;
  msg = error_of([&] { pack_regions(array[0], rects); });
  EXPECT_NE(msg.find("3 dimensions"), std::string::npos) << msg;
  msg = error_of([&] { unpack_regions(array, torch::zeros({12}, torch::kComplexDouble), rects, true); });
  EXPECT_NE(msg.find("buffer has dtype ComplexDouble but the array has dtype ComplexFloat"),
            std::string::npos) << msg;
  msg = error_of([&] { unpack_regions(array, torch::zeros({11}, torch::kComplexFloat), rects, true); });
  EXPECT_NE(msg.find("buffer has 11 elements but the rects need L * sum(h * w) = 12"),
            std::string::npos) << msg;
}

TEST(HaloOpsErrors, InPlaceRefusesGrad) {
  auto array = torch::zeros({2, 8, 9}, torch::kDouble).requires_grad_();
  const auto rects = torch::tensor({{0, 0, 2, 3}}, torch::kLong);
  const auto buffer = torch::ones({12}, torch::kDouble);
  const auto msg = error_of([&] { unpack_regions_(array, buffer, rects, true); });
  EXPECT_NE(msg.find("not differentiable"), std::string::npos) << msg;
  // Under NoGradGuard it is allowed (e.g. on a .grad tensor), and bumps the version.
  torch::NoGradGuard no_grad;
  const auto version = array._version();
  unpack_regions_(array, buffer, rects, true);
  EXPECT_GT(array._version(), version);
  EXPECT_EQ(array.sum().item<double>(), 12.0);
}

// ----------------------------------------------------------------------------
// CUDA against CPU


TEST(HaloOpsCuda, PackUnpackMatchCpu) {
  REQUIRE_CUDA();
  const auto rects = torch::tensor({{0, 0, 16, 300}, {16, 0, 200, 16}, {100, 100, 50, 70},
                                    {120, 120, 50, 70}},  // overlaps the previous one
                                   torch::kLong);
  for (auto dtype : kAllDtypes) {
    SCOPED_TRACE(c10::toString(dtype));
    const auto array = random_data({3, 260, 300}, dtype, 20);
    const int64_t n = packed_size(rects, 3);
    const auto cpu = pack_regions(array, rects);
    const auto array_gpu = array.cuda(), rects_gpu = rects.cuda();
    poison_next_allocation(n, dtype, torch::kCUDA);
    const auto gpu = pack_regions(array_gpu, rects_gpu);
    EXPECT_TRUE(torch::equal(gpu.cpu(), cpu));
    const auto buffer = random_data({n}, dtype, 21);
    for (bool accumulate : {false, true}) {
      const auto expected = unpack_regions(array, buffer, rects, accumulate);
      const auto got = unpack_regions(array.cuda(), buffer.cuda(), rects.cuda(), accumulate);
      EXPECT_TRUE(torch::allclose(got.cpu(), expected));
      auto inplace = array.cuda();
      unpack_regions_(inplace, buffer.cuda(), rects, accumulate);  // rects on the CPU
      EXPECT_TRUE(torch::allclose(inplace.cpu(), expected));
    }
  }
}

}  // namespace
