// The GPU engine's settings that default to the environment (SchedulerOptions::activation_upload, decode_graphs,
// fused_ops):
// one place that reads the variables, for the engine and for what `ferry bench` reports. CUDA-free.
#include <cstdlib>
#include <cstring>
#include <string>

#include "ferry/error.hpp"
#include "ferry/offload/scheduler.hpp"

namespace ferry {

SchedulerOptions::ActivationUpload resolve_activation_upload(SchedulerOptions::ActivationUpload asked) {
  using Upload = SchedulerOptions::ActivationUpload;
  if (asked != Upload::DEFAULT) return asked;
  const char* env = std::getenv("FERRY_ACTIVATION_UPLOAD");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "copy") == 0) return Upload::COPY_ENGINE;
  if (std::strcmp(env, "kernel") == 0) return Upload::KERNEL;
  fail(ErrorCategory::INVALID_ARGUMENT, std::string("FERRY_ACTIVATION_UPLOAD='") + env +
                                            "': expected copy (the copy engine) or kernel (reads over the bus)");
}

bool resolve_decode_graphs(SchedulerOptions::DecodeGraphs asked) {
  using Graphs = SchedulerOptions::DecodeGraphs;
  if (asked != Graphs::DEFAULT) return asked == Graphs::ON;
  const char* env = std::getenv("FERRY_DECODE_GRAPHS");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "on") == 0) return true;
  if (std::strcmp(env, "off") == 0) return false;
  fail(ErrorCategory::INVALID_ARGUMENT,
       std::string("FERRY_DECODE_GRAPHS='") + env + "': expected on (decode steps replayed as CUDA graphs) or off");
}

bool resolve_fused_ops(SchedulerOptions::FusedOps asked) {
  using Fused = SchedulerOptions::FusedOps;
  if (asked != Fused::DEFAULT) return asked == Fused::ON;
  const char* env = std::getenv("FERRY_FUSED_OPS");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "on") == 0) return true;
  if (std::strcmp(env, "off") == 0) return false;
  fail(ErrorCategory::INVALID_ARGUMENT, std::string("FERRY_FUSED_OPS='") + env +
                                            "': expected on (norm, SwiGLU and residual add inside the GPU's GEMV; "
                                            "RoPE with the KV store) or off");
}

}  // namespace ferry
