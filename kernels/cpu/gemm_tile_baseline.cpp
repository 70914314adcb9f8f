// The GEMM tile for the baseline ISA (SSE2 on x86-64): what every CPU can run.
#define FERRY_GEMM_TILE_FN gemm_tile_baseline
#include "gemm_tile_eigen.inc"
