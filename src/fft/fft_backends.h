#pragma once
// The libraries behind fft2_in_place (src/fft/batched_fft.h); internal.
// Each transforms `count` contiguous (h, w) frames of complex T in place,
// orthonormally, on the calling thread. Compiled only where the build has the
// library (TESSERA_WITH_MKL_FFT, TESSERA_WITH_FFTW).
#include <complex>
#include <cstdint>
#include <string>
#include <vector>

namespace tessera::fft_detail {

template <typename T>
void mkl_fft2(std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse);
std::string mkl_library_version();

template <typename T>
void fftw_fft2(std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse);
std::string fftw_library_version();

// pocketfft (third_party/pocketfft, BSD-3-Clause), always in the build, once
// per x86-64 instruction-set level (src/fft/pocketfft_build.inc): baseline
// (SSE2, 4 floats per vector) and avx2 (AVX2 without FMA, 8 floats; with GCC
// on x86-64). Both compute the same operations in the same order and neither
// uses FMAs, so both give the same bits: a result does not depend on the CPU
// that computed it. (An AVX-512 build was measured no faster than avx2 on
// 64^2 and 128^2 frames here, and GCC 12 cannot keep FMAs out of it.)
enum class PocketfftIsa { baseline, avx2 };
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TESSERA_POCKETFFT_WIDE_BUILDS 1
#endif
const char* pocketfft_isa_name(PocketfftIsa isa);
// The builds this CPU can run, the widest first; pocketfft_fft2 uses the first.
std::vector<PocketfftIsa> pocketfft_isas_on_this_cpu();
template <typename T>
void pocketfft_fft2(std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse);
template <typename T>
void pocketfft_fft2(std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse, PocketfftIsa isa);
std::string pocketfft_library_version();
// One per build (pocketfft_<isa>.cpp).
#define TESSERA_DECLARE_POCKETFFT_BUILD(isa)                                                          \
  void pocketfft_fft2_##isa(std::complex<float>* frames, int64_t count, int64_t h, int64_t w, bool inverse); \
  void pocketfft_fft2_##isa(std::complex<double>* frames, int64_t count, int64_t h, int64_t w, bool inverse);
TESSERA_DECLARE_POCKETFFT_BUILD(baseline)
TESSERA_DECLARE_POCKETFFT_BUILD(avx2)
#undef TESSERA_DECLARE_POCKETFFT_BUILD

// frames[0 .. n) *= s: the unnormalised libraries' 1/sqrt(h w).
template <typename T>
void scale_in_place(std::complex<T>* frames, int64_t n, T s);

}  // namespace tessera::fft_detail
