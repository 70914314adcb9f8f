// NVTX marks for compute-sanitizer (tool_marks.hpp).
#include "tool_marks.hpp"

#include <nvtx3/nvToolsExtMemCudaRt.h>

namespace ferry::cuda::detail {

void mark_written_for_tools(const void* p, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  static const nvtxDomainHandle_t domain = nvtxDomainCreateA("ferry");
  const nvtxMemVirtualRangeDesc_t range{bytes, p};
  nvtxMemMarkInitializedBatch_t batch{};
  batch.extCompatID = NVTX_EXT_COMPATID_MEM;
  batch.structSize = sizeof(batch);
  batch.regionType = NVTX_MEM_TYPE_VIRTUAL_ADDRESS;
  batch.regionDescCount = 1;
  batch.regionDescElementSize = sizeof(range);
  batch.regionDescElements = &range;
  nvtxMemCudaMarkInitialized(domain, stream, 0, &batch);
}

}  // namespace ferry::cuda::detail
