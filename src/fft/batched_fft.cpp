#include "src/fft/batched_fft.h"

#include <torch/version.h>

#include <atomic>

#include "src/error.h"
#include "src/fft/fft_backends.h"
#include "src/simd.h"

namespace tessera {
namespace {

constexpr FftLibrary kBuildDefault =
#if defined(TESSERA_DEFAULT_FFT_FFTW)
    FftLibrary::fftw;
#elif defined(TESSERA_DEFAULT_FFT_MKL)
    FftLibrary::mkl;
#elif defined(TESSERA_DEFAULT_FFT_POCKETFFT)
    FftLibrary::pocketfft;
#else
    FftLibrary::libtorch;
#endif

std::atomic<FftLibrary> active{kBuildDefault};

bool available(FftLibrary library) {
  switch (library) {
    case FftLibrary::libtorch: return true;
    case FftLibrary::pocketfft: return true;
#ifdef TESSERA_WITH_MKL_FFT
    case FftLibrary::mkl: return true;
#endif
#ifdef TESSERA_WITH_FFTW
    case FftLibrary::fftw: return true;
#endif
    default: return false;
  }
}

std::string available_names() {
  std::string names;
  for (auto l : available_fft_libraries()) names += std::string(names.empty() ? "" : ", ") + fft_library_name(l);
  return names;
}

template <typename T>
void transform(std::complex<T>* data, int64_t count, int64_t h, int64_t w, bool inverse, FftLibrary library) {
  switch (library) {
    case FftLibrary::pocketfft: return fft_detail::pocketfft_fft2<T>(data, count, h, w, inverse);
#ifdef TESSERA_WITH_MKL_FFT
    case FftLibrary::mkl: return fft_detail::mkl_fft2<T>(data, count, h, w, inverse);
#endif
#ifdef TESSERA_WITH_FFTW
    case FftLibrary::fftw: return fft_detail::fftw_fft2<T>(data, count, h, w, inverse);
#endif
    default: break;
  }
  throw Error(detail::concat("the FFT library '", fft_library_name(library), "' is not in this build (it has ",
                available_names(), ")"));
}

}  // namespace

const char* fft_library_name(FftLibrary library) {
  switch (library) {
    case FftLibrary::libtorch: return "libtorch";
    case FftLibrary::pocketfft: return "pocketfft";
    case FftLibrary::mkl: return "mkl";
    case FftLibrary::fftw: return "fftw";
  }
  return "unknown";
}

FftLibrary fft_library_from_name(const std::string& name) {
  for (auto l : {FftLibrary::libtorch, FftLibrary::pocketfft, FftLibrary::mkl, FftLibrary::fftw})
    if (name == fft_library_name(l)) {
      TESSERA_REQUIRE(Error, available(l), "the FFT library '", name, "' is not in this build (it has ",
                      available_names(), ")");
      return l;
    }
  throw Error(detail::concat("unknown FFT library '", name, "'; this build has ", available_names()));
}

std::vector<FftLibrary> available_fft_libraries() {
  std::vector<FftLibrary> out{kBuildDefault};
  for (auto l : {FftLibrary::libtorch, FftLibrary::pocketfft, FftLibrary::mkl, FftLibrary::fftw})
    if (l != kBuildDefault && available(l)) out.push_back(l);
  return out;
}

FftLibrary default_fft_library() { return kBuildDefault; }
FftLibrary active_fft_library() { return active.load(); }

std::string fft_library_description(FftLibrary library) {
  switch (library) {
    case FftLibrary::libtorch: return std::string("libtorch (torch::fft of LibTorch ") + TORCH_VERSION + ")";
    case FftLibrary::pocketfft: return "pocketfft (" + fft_detail::pocketfft_library_version() + ", BSD-3-Clause)";
#ifdef TESSERA_WITH_MKL_FFT
    case FftLibrary::mkl: return "mkl (" + fft_detail::mkl_library_version() + ", inside LibTorch " TORCH_VERSION ")";
#endif
#ifdef TESSERA_WITH_FFTW
    case FftLibrary::fftw: return "fftw (" + fft_detail::fftw_library_version() + ", GPL-2+)";
#endif
    default: return std::string(fft_library_name(library)) + " (not in this build)";
  }
}

ScopedFftLibrary::ScopedFftLibrary(FftLibrary library) : previous_(active.load()) {
  TESSERA_REQUIRE(Error, available(library), "the FFT library '", fft_library_name(library),
                  "' is not in this build (it has ", available_names(), ")");
  active = library;
}
ScopedFftLibrary::~ScopedFftLibrary() { active = previous_; }

void fft2_in_place(const torch::Tensor& frames, bool inverse, FftLibrary library) {
  TESSERA_REQUIRE(Error, frames.dim() >= 2 && frames.is_complex(), "fft2_in_place: frames must be a complex (..., h, w) "
                  "array, got ", frames.sizes(), " ", frames.scalar_type());
  if (library == FftLibrary::libtorch || !frames.device().is_cpu()) {
    frames.copy_(inverse ? torch::fft::ifft2(frames, c10::nullopt, {-2, -1}, "ortho")
                         : torch::fft::fft2(frames, c10::nullopt, {-2, -1}, "ortho"));
    return;
  }
  TESSERA_REQUIRE(Error, frames.is_contiguous(), "fft2_in_place: frames must be contiguous");
  const int64_t h = frames.size(-2), w = frames.size(-1), count = frames.numel() / std::max<int64_t>(h * w, 1);
  if (count == 0 || h * w == 0) return;
  if (frames.scalar_type() == torch::kComplexDouble)
    transform(reinterpret_cast<std::complex<double>*>(frames.data_ptr()), count, h, w, inverse, library);
  else if (frames.scalar_type() == torch::kComplexFloat)
    transform(reinterpret_cast<std::complex<float>*>(frames.data_ptr()), count, h, w, inverse, library);
  else
    throw Error(detail::concat("fft2_in_place: complex64 or complex128 frames, got ", frames.scalar_type()));
}

namespace fft_detail {

template <typename T>
TESSERA_SIMD_CLONES void scale_in_place(std::complex<T>* frames, int64_t n, T s) {
  T* x = reinterpret_cast<T*>(frames);
  for (int64_t i = 0; i < 2 * n; ++i) x[i] *= s;
}
template void scale_in_place<float>(std::complex<float>*, int64_t, float);
template void scale_in_place<double>(std::complex<double>*, int64_t, double);

}  // namespace fft_detail
}  // namespace tessera
