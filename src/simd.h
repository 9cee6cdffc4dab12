#pragma once
// Hot per-pixel loops are compiled twice on x86-64: for AVX2 + FMA (x86-64-v3,
// every server CPU since 2013) and for the baseline, chosen once at load time
// by the dynamic linker. The library stays portable (no -march=native in the
// build) and still runs 8 floats per instruction where the CPU can. Applied
// to loops called per pattern or per block, never per pixel: a clone is never
// inlined into its caller.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__) && !defined(__clang__)
#define TESSERA_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define TESSERA_SIMD_CLONES
#endif
