// MKL's DFTI, as linked into the pip LibTorch (libtorch_cpu exports it).
#ifdef TESSERA_WITH_MKL_FFT
#include <mkl_dfti.h>
#include <mkl_service.h>

#include <map>
#include <memory>
#include <cmath>
#include <tuple>
#include <type_traits>

#include "src/error.h"
#include "src/fft/fft_backends.h"

namespace tessera::fft_detail {
namespace {

void check(MKL_LONG status, const char* what) {
  TESSERA_REQUIRE(Error, status == 0 || DftiErrorClass(status, DFTI_NO_ERROR), "MKL FFT: ", what, " failed: ",
                  DftiErrorMessage(status));
}

struct DescriptorDeleter {
  void operator()(DFTI_DESCRIPTOR* d) const { DftiFreeDescriptor(&d); }
};
using Descriptor = std::unique_ptr<DFTI_DESCRIPTOR, DescriptorDeleter>;

// One committed descriptor per shape, precision and batch size, per thread: a
// descriptor is not documented as safe to compute with from several threads
// at once, and the fused loss's threads live as long as the process.
DFTI_DESCRIPTOR* descriptor(bool dbl, int64_t count, int64_t h, int64_t w) {
  thread_local std::map<std::tuple<bool, int64_t, int64_t, int64_t>, Descriptor> cache;
  auto& d = cache[{dbl, count, h, w}];
  if (d) return d.get();
  DFTI_DESCRIPTOR_HANDLE raw = nullptr;
  MKL_LONG lengths[2] = {static_cast<MKL_LONG>(h), static_cast<MKL_LONG>(w)};
  check(DftiCreateDescriptor(&raw, dbl ? DFTI_DOUBLE : DFTI_SINGLE, DFTI_COMPLEX, 2, lengths), "creating a plan");
  Descriptor owned(raw);
  check(DftiSetValue(raw, DFTI_NUMBER_OF_TRANSFORMS, static_cast<MKL_LONG>(count)), "setting the batch size");
  check(DftiSetValue(raw, DFTI_INPUT_DISTANCE, static_cast<MKL_LONG>(h * w)), "setting the frame distance");
  check(DftiSetValue(raw, DFTI_OUTPUT_DISTANCE, static_cast<MKL_LONG>(h * w)), "setting the frame distance");
  check(DftiSetValue(raw, DFTI_THREAD_LIMIT, static_cast<MKL_LONG>(1)), "limiting it to one thread");
  const double scale = 1.0 / std::sqrt(static_cast<double>(h * w));
  for (auto direction : {DFTI_FORWARD_SCALE, DFTI_BACKWARD_SCALE}) {
    if (dbl)
      check(DftiSetValue(raw, direction, scale), "setting the scale");
    else
      check(DftiSetValue(raw, direction, static_cast<float>(scale)), "setting the scale");
  }
  check(DftiCommitDescriptor(raw), "committing a plan");
  d = std::move(owned);
  return d.get();
}

}  // namespace

template <typename T>
void mkl_fft2(std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse) {
  auto* d = descriptor(std::is_same_v<T, double>, count, h, w);
  check(inverse ? DftiComputeBackward(d, frames) : DftiComputeForward(d, frames), "a transform");
}

template void mkl_fft2<float>(std::complex<float>*, int64_t, int64_t, int64_t, bool);
template void mkl_fft2<double>(std::complex<double>*, int64_t, int64_t, int64_t, bool);

std::string mkl_library_version() {
  // The library's own (the headers may be another release): "Intel(R) oneAPI
  // Math Kernel Library Version 2024.2-Product Build ..." -> "MKL 2024.2".
  char text[256] = {0};
  MKL_Get_Version_String(text, static_cast<int>(sizeof text));
  std::string s(text);
  const auto at = s.find("Version ");
  if (at == std::string::npos) return "MKL";
  const auto begin = at + 8, end = s.find_first_not_of("0123456789.", begin);
  return "MKL " + s.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

}  // namespace tessera::fft_detail
#endif
