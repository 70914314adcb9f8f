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

}  // namespace ferry::cpu::detail

#if defined(__x86_64__) || defined(__i386__)
#define FERRY_CPU_X86 1
// Attribute for functions of the AVX2 variant (and every helper they inline).
#define FERRY_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define FERRY_CPU_X86 0
#endif
