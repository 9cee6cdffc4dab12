#pragma once
// The libraries behind fft2_in_place (src/fft/batched_fft.h); internal.
// Each transforms `count` contiguous (h, w) frames of complex T in place,
// orthonormally, on the calling thread. Compiled only where the build has the
// library (TESSERA_WITH_MKL_FFT, TESSERA_WITH_FFTW).
#include <complex>
#include <cstdint>
#include <string>

namespace tessera::fft_detail {

template <typename T>
void mkl_fft2(std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse);
std::string mkl_library_version();

template <typename T>
void fftw_fft2(std::complex<T>* frames, int64_t count, int64_t h, int64_t w, bool inverse);
std::string fftw_library_version();

// frames[0 .. n) *= s: the unnormalised libraries' 1/sqrt(h w).
template <typename T>
void scale_in_place(std::complex<T>* frames, int64_t n, T s);

}  // namespace tessera::fft_detail
