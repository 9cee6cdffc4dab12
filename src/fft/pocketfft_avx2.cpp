// pocketfft for AVX2: 8 floats per vector. Without FMA, which would round
// differently from the baseline build (src/fft/pocketfft_build.inc).
#include "src/fft/fft_backends.h"
#ifdef TESSERA_POCKETFFT_WIDE_BUILDS
#define TESSERA_POCKETFFT_BUILD avx2
#define TESSERA_POCKETFFT_TARGET _Pragma("GCC target(\"avx,avx2,popcnt,sse4.2\")")
#define TESSERA_POCKETFFT_VECTORS_AS_AVX 1
#include "src/fft/pocketfft_build.inc"
#endif
