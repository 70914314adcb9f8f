#include "isa.hpp"

#include <algorithm>
#include <cstdlib>
#include <string_view>

#if FERRY_CPU_X86
#include <cpuid.h>
#endif

namespace ferry::cpu::detail {
namespace {

#if FERRY_CPU_X86
// F16C from CPUID leaf 1 (ECX bit 29): not every compiler's __builtin_cpu_supports knows "f16c". The OS's saving of
// the YMM state is covered by __builtin_cpu_supports("avx2").
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}
#endif

CpuIsa detect() {
  CpuIsa best = CpuIsa::SCALAR;
#if FERRY_CPU_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c()) best = CpuIsa::AVX2;
#endif
  // An unknown value is ignored rather than fatal: the variable only ever lowers the ISA for testing ("avx2" lowers
  // only the GEMM tile's, active_gemm_isa).
  if (const char* cap = std::getenv("FERRY_CPU_ISA"); cap != nullptr && std::string_view(cap) == "scalar")
    best = CpuIsa::SCALAR;
  return best;
}

GemmIsa detect_gemm() {
  GemmIsa best = GemmIsa::BASELINE;
#if FERRY_CPU_X86 && FERRY_HAVE_GEMM_AVX
  if (active_isa() == CpuIsa::AVX2) best = GemmIsa::AVX2;  // AVX2, FMA and F16C, as the GEMV variant needs
  // __builtin_cpu_supports covers the OS's saving of the ZMM state for the AVX-512 features.
  if (best == GemmIsa::AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    best = GemmIsa::AVX512;
#endif
  if (const char* cap = std::getenv("FERRY_CPU_ISA"); cap != nullptr && std::string_view(cap) == "avx2")
    best = std::min(best, GemmIsa::AVX2);
  return best;
}

}  // namespace

GemmIsa active_gemm_isa() {
  static const GemmIsa isa = detect_gemm();
  return isa;
}

const char* gemm_isa_name(GemmIsa isa) {
  switch (isa) {
    case GemmIsa::BASELINE:
      return "baseline";
    case GemmIsa::AVX2:
      return "avx2";
    case GemmIsa::AVX512:
      return "avx512";
  }
  return "unknown";
}

CpuIsa active_isa() {
  static const CpuIsa isa = detect();
  return isa;
}

const char* isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::SCALAR:
      return "scalar";
    case CpuIsa::AVX2:
      return "avx2";
  }
  return "unknown";
}

}  // namespace ferry::cpu::detail
