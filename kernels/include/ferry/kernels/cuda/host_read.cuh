// Small host-to-device moves done by a kernel that reads pinned host memory over the bus (zero-copy), instead of by
// a copy engine. The engine streams weights host-to-device on its copy stream; a cudaMemcpyAsync of the step's
// activations (kilobytes) queued in the same direction waits behind those copies (hundreds of megabytes) even on
// another stream: on the H200 a decode step's compute started only after two 178 MB layer copies (6.4 ms of a
// 14.6 ms step). A kernel's reads do not queue behind the copy engine.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace ferry::cuda {

// The device's address of pinned host memory `host` (cudaHostAlloc'd or registered), or nullptr when the device
// cannot read it directly (pageable memory, or a system without unified addressing): then use cudaMemcpyAsync.
const void* device_view_of_host(const void* host) noexcept;

// Copies `bytes` from `host_view` (device_view_of_host of pinned memory) to device memory `dst` with a kernel on
// `stream`. Any alignment and size; 16-byte loads where both ends allow.
void read_host_to_device(void* dst, const void* host_view, size_t bytes, cudaStream_t stream);

}  // namespace ferry::cuda
