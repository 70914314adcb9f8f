#include "isa.hpp"

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
  // An unknown value is ignored rather than fatal: the variable only ever lowers the ISA for testing.
  if (const char* cap = std::getenv("FERRY_CPU_ISA"); cap != nullptr && std::string_view(cap) == "scalar")
    best = CpuIsa::SCALAR;
  return best;
}

}  // namespace

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
