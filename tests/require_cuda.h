#pragma once
// Skips a GoogleTest test, saying why, where no CUDA device can run it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#define REQUIRE_CUDA()                                                                  \
  do {                                                                                  \
    if (!torch::cuda::is_available())                                                   \
      GTEST_SKIP() << "no CUDA device available (or LibTorch built without CUDA): the " \
                      "CUDA kernels are not exercised here";                            \
  } while (0)
