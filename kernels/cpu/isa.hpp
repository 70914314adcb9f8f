// Which instruction-set variant the CPU kernels run. The library is compiled for the baseline x86-64 ISA; faster
// variants are compiled per function with __attribute__((target(...))) and picked here at run time, so one binary runs
// everywhere. FERRY_CPU_ISA=scalar|avx2 in the environment caps the choice (read once), which is how the tests run the
// portable fallback on a machine that has AVX2. Not a public header.
#pragma once

namespace ferry::cpu::detail {

enum class CpuIsa {
  SCALAR,  // portable C++ (what the compiler's baseline auto-vectorisation makes of it)
  AVX2,    // AVX2 + FMA + F16C (Haswell / Zen and later)
};

// The variant in use: the best the CPU supports, capped by FERRY_CPU_ISA.
CpuIsa active_isa();
const char* isa_name(CpuIsa isa);

// The ISA of the CPU GEMM's Eigen tile (gemm_tile.hpp): AVX-512 (F, DQ, BW, VL, with FMA) or AVX2 (+ FMA) when the
// CPU has them and the build compiled those tiles (x86-64 with GCC or Clang), else the baseline. FERRY_CPU_ISA=avx2
// caps it at AVX2 and =scalar at the baseline, so the tests run every variant a machine has.
enum class GemmIsa { BASELINE, AVX2, AVX512 };
GemmIsa active_gemm_isa();
const char* gemm_isa_name(GemmIsa isa);

}  // namespace ferry::cpu::detail

#if defined(__x86_64__) || defined(__i386__)
#define FERRY_CPU_X86 1
// Attribute for functions of the AVX2 variant (and every helper they inline).
#define FERRY_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define FERRY_CPU_X86 0
#endif
