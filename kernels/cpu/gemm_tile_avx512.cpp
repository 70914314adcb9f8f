// The GEMM tile for AVX-512 F/DQ/BW/VL (compiled with those flags; run only when isa.cpp found them). Eigen's
// namespace is renamed so its instantiations here are this file's alone (gemm_tile.hpp).
#define Eigen ferry_eigen_avx512
#define FERRY_GEMM_TILE_FN gemm_tile_avx512
#include "gemm_tile_eigen.inc"
