// What ferry tells compute-sanitizer that the tool cannot see for itself (NVTX memory API; header-only NVTX, so no
// library to link, and a no-op unless a tool is attached).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace ferry::cuda::detail {

// Marks `bytes` at `p` as written by the work enqueued on `stream` so far, for initcheck. Its view of cuBLAS's stores
// is incomplete on Hopper: on the H100 (2026-12-05/06) every ferry kernel that read the output of a cuBLASLt GEMM or
// of cublasGemmStridedBatchedEx was reported as reading uninitialized memory (RoPE, the KV store, SiLU·mul, the
// residual add; attention's softmax and unpack), while the same kernels reading a GEMV's output were not and memcheck
// was clean; with the GEMM outputs marked, test_serve_gpu's 55552 reports in ferry's kernels went to none.
void mark_written_for_tools(const void* p, size_t bytes, cudaStream_t stream);

}  // namespace ferry::cuda::detail
