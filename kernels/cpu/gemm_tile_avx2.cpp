// The GEMM tile for AVX2 + FMA (compiled with -mavx2 -mfma -mf16c; run only when isa.cpp found them). Eigen's
// namespace is renamed so its instantiations here are this file's alone (gemm_tile.hpp).
#define Eigen ferry_eigen_avx2
#define FERRY_GEMM_TILE_FN gemm_tile_avx2
#include "gemm_tile_eigen.inc"
