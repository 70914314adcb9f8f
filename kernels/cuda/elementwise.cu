// Element-wise ops (SiLU-gated product, tanh-GELU, add, adaLN modulate, bias add, gated residual add) on the GPU.
//
// Roofline: 8-12 bytes moved per element, a few flops: memory-bound; the ideal is bytes / copy bandwidth.
// Technique: grid-stride loops over float4 when every pointer is 16-byte aligned (and, for the row-broadcast ops, n is
// a multiple of 4 so a vector never straddles two rows), over scalars otherwise. The vector path issues 16-byte
// accesses, which is what lets a memory-bound kernel reach the copy rate on current GPUs.
// Transcendentals use the accurate expf/tanhf (not the __expf intrinsics): the op is memory-bound, so accuracy is free.
#include "ferry/kernels/cuda/elementwise.cuh"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "../cpu/op_checks.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "reduce.cuh"

namespace ferry::cuda {
namespace {

using detail::grid_for;

constexpr int kThreads = 256;

struct SiluMul {
  __device__ float operator()(float g, float u) const { return g / (1.0f + expf(-g)) * u; }
};
struct Add {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct GeluTanh {
  __device__ float operator()(float x, float) const {
    constexpr float kSqrt2OverPi = 0.7978845608028654f;
    // 0.5·x·(1 + tanh(u)) = x / (1 + e^(-2u)): the same function without the cancellation in 1 + tanh(u) for
    // negative x, where that form loses every digit (gelu(-4) ~ -1e-4 from 1 - 0.99997).
    const float u = kSqrt2OverPi * (x + 0.044715f * x * x * x);
    return x / (1.0f + expf(-2.0f * u));
  }
};

template <class Op>
__device__ __forceinline__ float4 apply4(const float4 a, const float4 b, Op op) {
  return make_float4(op(a.x, b.x), op(a.y, b.y), op(a.z, b.z), op(a.w, b.w));
}

// y[i] = op(a[i], b[i]); b may be null for unary ops (then op ignores its second argument).
template <class Op>
__global__ void map_kernel(const float* a, const float* b, float* y, int64_t n, bool vec, Op op) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vec) {
    const int64_t n4 = n / 4;
    const auto* a4 = reinterpret_cast<const float4*>(a);
    const auto* b4 = reinterpret_cast<const float4*>(b);
    auto* y4 = reinterpret_cast<float4*>(y);
    for (int64_t i = start; i < n4; i += stride) y4[i] = apply4(a4[i], b ? b4[i] : a4[i], op);
    for (int64_t i = n4 * 4 + start; i < n; i += stride) y[i] = op(a[i], b ? b[i] : 0.0f);
  } else {
    for (int64_t i = start; i < n; i += stride) y[i] = op(a[i], b ? b[i] : 0.0f);
  }
}

// Row-broadcast ops over [rows, n]: y[r, i] = op(x[r, i], p[i], q[i], y[r, i]) with p and q vectors of n (q only
// where the op reads it, y's old value only where it accumulates). Blocks stride over columns (x) and rows (y).
struct ModulateRow {  // y = x * (1 + scale) + shift: p = scale, q = shift
  static constexpr bool kReadsQ = true, kReadsY = false;
  __device__ float operator()(float x, float p, float q, float) const { return x * (1.0f + p) + q; }
};
struct GatedAddRow {  // y(=residual) += gate * x: p = gate
  static constexpr bool kReadsQ = false, kReadsY = true;
  __device__ float operator()(float x, float p, float, float y) const { return y + p * x; }
};
struct BiasAddRow {  // y = x + bias: p = bias
  static constexpr bool kReadsQ = false, kReadsY = false;
  __device__ float operator()(float x, float p, float, float) const { return x + p; }
};

template <class Op>
__device__ __forceinline__ float4 apply_row4(const float4 x, const float4 p, const float4 q, const float4 y, Op op) {
  return make_float4(op(x.x, p.x, q.x, y.x), op(x.y, p.y, q.y, y.y), op(x.z, p.z, q.z, y.z), op(x.w, p.w, q.w, y.w));
}

template <class Op>
__global__ void rows_kernel(const float* x, const float* p, const float* q, float* y, int64_t rows, int64_t n, bool vec,
                            Op op) {
  const int64_t col_stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const float4 zero4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (vec) {
    const int64_t n4 = n / 4;
    const auto* p4 = reinterpret_cast<const float4*>(p);
    const auto* q4 = reinterpret_cast<const float4*>(q);
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
      const auto* x4 = reinterpret_cast<const float4*>(x + r * n);
      auto* y4 = reinterpret_cast<float4*>(y + r * n);
      for (int64_t i = col0; i < n4; i += col_stride) {
        const float4 qv = Op::kReadsQ ? q4[i] : zero4;
        const float4 yv = Op::kReadsY ? y4[i] : zero4;
        y4[i] = apply_row4(x4[i], p4[i], qv, yv, op);
      }
    }
  } else {
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      for (int64_t i = col0; i < n; i += col_stride)
        yr[i] = op(xr[i], p[i], Op::kReadsQ ? q[i] : 0.0f, Op::kReadsY ? yr[i] : 0.0f);
    }
  }
}

bool aligned16(const void* p) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0; }

void check_ptrs(const char* op, int64_t count, std::initializer_list<const void*> ptrs) {
  if (count == 0) return;
  for (const void* p : ptrs)
    if (p == nullptr)
      fail(ErrorCategory::INVALID_ARGUMENT,
           std::string(op) + ": a pointer is null for " + std::to_string(count) + " elements");
}

template <class Op>
void launch_map(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream, Op op) {
  const bool vec = aligned16(a) && aligned16(b) && aligned16(y);
  map_kernel<<<grid_for(vec ? (n + 3) / 4 : n, kThreads), kThreads, 0, stream>>>(a, b, y, n, vec, op);
  FERRY_CUDA_CHECK_LAUNCH();
}

template <class Op>
void launch_rows(const float* x, const float* p, const float* q, float* y, int64_t rows, int64_t n, cudaStream_t stream,
                 Op op) {
  const bool vec = n % 4 == 0 && aligned16(x) && aligned16(p) && aligned16(q) && aligned16(y);
  const int64_t cols = vec ? n / 4 : n;
  constexpr int64_t kMaxRowBlocks = 65535;  // gridDim.y limit; the row loop covers the rest
  const unsigned grid_x = grid_for(cols, kThreads);
  // Enough blocks in total to fill the device; each block then walks rows with a stride of gridDim.y.
  const int64_t want_y = std::max<int64_t>(1, (int64_t{1} << 14) / grid_x);
  const dim3 grid(grid_x, static_cast<unsigned>(std::min({rows, kMaxRowBlocks, want_y})));
  rows_kernel<<<grid, kThreads, 0, stream>>>(x, p, q, y, rows, n, vec, op);
  FERRY_CUDA_CHECK_LAUNCH();
}

}  // namespace

void silu_mul(const float* gate, const float* up, float* y, int64_t n, cudaStream_t stream) {
  ferry::detail::check_rows("cuda::silu_mul", 1, n);
  check_ptrs("cuda::silu_mul", n, {gate, up, y});
  if (n == 0) return;
  launch_map(gate, up, y, n, stream, SiluMul{});
}

void gelu_tanh(const float* x, float* y, int64_t n, cudaStream_t stream) {
  ferry::detail::check_rows("cuda::gelu_tanh", 1, n);
  check_ptrs("cuda::gelu_tanh", n, {x, y});
  if (n == 0) return;
  launch_map(x, nullptr, y, n, stream, GeluTanh{});
}

void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream) {
  ferry::detail::check_rows("cuda::add", 1, n);
  check_ptrs("cuda::add", n, {a, b, y});
  if (n == 0) return;
  launch_map(a, b, y, n, stream, Add{});
}

void modulate(const float* x, const float* shift, const float* scale, float* y, int64_t rows, int64_t n,
              cudaStream_t stream) {
  ferry::detail::check_rows("cuda::modulate", rows, n);
  check_ptrs("cuda::modulate", rows * n, {x, shift, scale, y});
  if (rows == 0 || n == 0) return;
  launch_rows(x, scale, shift, y, rows, n, stream, ModulateRow{});
}

void add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n, cudaStream_t stream) {
  ferry::detail::check_rows("cuda::add_bias", rows, n);
  check_ptrs("cuda::add_bias", rows * n, {x, bias, y});
  if (rows == 0 || n == 0) return;
  launch_rows(x, bias, nullptr, y, rows, n, stream, BiasAddRow{});
}

void gated_add(float* residual, const float* gate, const float* x, int64_t rows, int64_t n, cudaStream_t stream) {
  ferry::detail::check_rows("cuda::gated_add", rows, n);
  check_ptrs("cuda::gated_add", rows * n, {residual, gate, x});
  if (rows == 0 || n == 0) return;
  launch_rows(x, gate, nullptr, residual, rows, n, stream, GatedAddRow{});
}

}  // namespace ferry::cuda
