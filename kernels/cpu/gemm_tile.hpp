// One tile of the CPU GEMM path (matmul.cpp): y[T, nr] = x[T, K] w[nr, K]^T with Eigen, float32, single-threaded
// (oneTBB runs the tiles in parallel). The library is compiled for the baseline ISA, where Eigen's float GEMM uses SSE2
// (36 GFLOP/s on one core of the 2-core Xeon that built this; 110 with AVX2 + FMA, 162 with AVX-512). So the tile is
// compiled three times, once per ISA (gemm_tile_baseline.cpp, gemm_tile_avx2.cpp, gemm_tile_avx512.cpp), and picked
// at run time (isa.hpp: active_gemm_isa). The AVX variants include Eigen with its namespace renamed (a macro), so
// none of their template instantiations shares a symbol with the baseline ones: the linker cannot hand a baseline
// caller an AVX body. Not a public header.
#pragma once

#include <cstdint>

namespace ferry::cpu::detail {

// x: [n_tokens, k] row-major; w: [nr, k] row-major; y: n_tokens rows of nr outputs, ldy floats apart.
using GemmTileFn = void (*)(const float* x, int64_t n_tokens, int64_t k, const float* w, int64_t nr, float* y,
                            int64_t ldy);

void gemm_tile_baseline(const float* x, int64_t n_tokens, int64_t k, const float* w, int64_t nr, float* y, int64_t ldy);
#if FERRY_HAVE_GEMM_AVX
void gemm_tile_avx2(const float* x, int64_t n_tokens, int64_t k, const float* w, int64_t nr, float* y, int64_t ldy);
void gemm_tile_avx512(const float* x, int64_t n_tokens, int64_t k, const float* w, int64_t nr, float* y, int64_t ldy);
#endif

}  // namespace ferry::cpu::detail
