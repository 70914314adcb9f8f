#include "ferry/models/flux/model.hpp"

#include <algorithm>
#include <charconv>
#include <numeric>
#include <optional>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"

namespace ferry {
namespace {

constexpr std::string_view kArch = "flux";

std::string shape_string(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

// The published RoPE split for Flux.1's head size of 128; other head sizes keep its proportions (1/8 for the first
// axis, the rest halved), rounded to even sizes.
std::vector<int32_t> default_axes(int64_t head_dim) {
  if (head_dim == 128) return {16, 56, 56};
  const auto first = static_cast<int32_t>(std::max<int64_t>(2, head_dim / 8 / 2 * 2));
  const auto rest = static_cast<int32_t>((head_dim - first) / 2 / 2 * 2);
  return {first, rest, static_cast<int32_t>(head_dim - first - rest)};
}

const GgufTensorInfo& required(const GgufFile& file, const std::string& name, const std::string& expected) {
  const GgufTensorInfo* t = file.find_tensor(name);
  if (t == nullptr)
    fail(ErrorCategory::FORMAT,
         file.name() + ": tensor '" + name + "' is missing (a flux model has it, " + expected + ")");
  return *t;
}

// The number of blocks "<prefix><i>." the file has: one more than the largest index (a gap is then refused by the
// missing tensor's name when the block is read).
int64_t block_count(const GgufFile& file, std::string_view prefix) {
  int64_t count = 0;
  for (const GgufTensorInfo& t : file.tensors()) {
    if (t.name.compare(0, prefix.size(), prefix) != 0) continue;
    int64_t index = -1;
    const char* begin = t.name.data() + prefix.size();
    const auto [end, ec] = std::from_chars(begin, t.name.data() + t.name.size(), index);
    if (ec != std::errc{} || *end != '.' || index < 0)
      fail(ErrorCategory::FORMAT,
           file.name() + ": tensor '" + t.name + "' has no block number after '" + std::string(prefix) + "'");
    count = std::max(count, index + 1);
  }
  return count;
}

// ne[axis] of a tensor that must exist; FORMAT naming it when it is missing or has the wrong number of dimensions.
int64_t dim_of(const GgufFile& file, const std::string& name, size_t n_dims, size_t axis) {
  const GgufTensorInfo& t = required(file, name, std::to_string(n_dims) + " dimensions");
  if (t.ne.size() != n_dims)
    fail(ErrorCategory::FORMAT, file.name() + ": tensor '" + name + "' has shape " + shape_string(t.ne) +
                                    ", expected " + std::to_string(n_dims) + " dimensions");
  return t.ne[axis];
}

class Reader {
 public:
  Reader(const GgufFile& file) : m_file(file) {}

  const GgufTensorInfo& expect(const std::string& name, const std::vector<int64_t>& ne) const {
    const GgufTensorInfo& t = required(m_file, name, "shape " + shape_string(ne));
    if (t.ne != ne)
      fail(ErrorCategory::FORMAT, m_file.name() + ": tensor '" + name + "' has shape " + shape_string(t.ne) +
                                      ", expected " + shape_string(ne) + " (ne order)");
    if (!type_traits(t.type).dequantizable)
      fail(ErrorCategory::UNSUPPORTED, m_file.name() + ": tensor '" + name + "' has type " +
                                           std::string(type_name(t.type)) + ", which ferry cannot compute with");
    return t;
  }

  const void* data(const GgufTensorInfo& t) const { return m_file.has_data() ? m_file.tensor_data(t).data() : nullptr; }

  const float* vector(const std::string& name, int64_t n) const {
    const GgufTensorInfo& t = expect(name, {n});
    if (t.type != GgmlType::F32)
      fail(ErrorCategory::UNSUPPORTED,
           m_file.name() + ": tensor '" + name + "' has type " + std::string(type_name(t.type)) + ", expected F32");
    const void* d = data(t);
    if (reinterpret_cast<uintptr_t>(d) % alignof(float) != 0)
      fail(ErrorCategory::UNSUPPORTED, m_file.name() + ": tensor '" + name + "' at file offset " +
                                           std::to_string(t.file_offset) + " is not 4-byte aligned");
    return static_cast<const float*>(d);
  }

  FluxLinear linear(const std::string& name, int64_t in, int64_t out) const {
    const GgufTensorInfo& t = expect(name + ".weight", {in, out});
    return FluxLinear{QuantMatrixView{t.type, data(t), in, out}, vector(name + ".bias", out)};
  }

  FluxMlpEmbedder embedder(const std::string& name, int64_t in, int64_t hidden) const {
    return {linear(name + ".in_layer", in, hidden), linear(name + ".out_layer", hidden, hidden)};
  }

 private:
  const GgufFile& m_file;
};

std::string_view stream_prefix(FluxStream s) { return s == FluxStream::IMG ? "img_" : "txt_"; }

constexpr FluxStream kStreams[] = {FluxStream::IMG, FluxStream::TXT};

}  // namespace

std::string flux_double_name(int64_t block, FluxStream stream, std::string_view part) {
  return "double_blocks." + std::to_string(block) + "." + std::string(stream_prefix(stream)) + std::string(part);
}

std::string flux_single_name(int64_t block, std::string_view part) {
  return "single_blocks." + std::to_string(block) + "." + std::string(part);
}

void FluxConfig::validate(std::string_view what) const {
  auto bad = [&](const std::string& why) { fail(ErrorCategory::INVALID_ARGUMENT, std::string(what) + ": " + why); };
  for (auto [name, v] : {std::pair{"hidden", hidden},
                         {"heads", n_head},
                         {"head_dim", head_dim},
                         {"mlp_hidden", mlp_hidden},
                         {"in_channels", in_channels},
                         {"context_in_dim", context_in_dim},
                         {"vec_in_dim", vec_in_dim},
                         {"timestep_dim", timestep_dim}})
    if (v <= 0) bad(std::string(name) + " is " + std::to_string(v) + ", expected a positive size");
  if (n_double < 0 || n_single < 0 || n_double + n_single == 0)
    bad(std::to_string(n_double) + " double and " + std::to_string(n_single) + " single blocks");
  if (hidden != n_head * head_dim)
    bad("hidden " + std::to_string(hidden) + " is not heads " + std::to_string(n_head) + " x head_dim " +
        std::to_string(head_dim));
  if (timestep_dim % 2 != 0) bad("timestep_dim " + std::to_string(timestep_dim) + " is odd");
  // The packed latents enter the residual stream as its first in_channels columns (the rest zero): a narrower stream
  // would be written past its rows.
  if (hidden < in_channels)
    bad("hidden " + std::to_string(hidden) + " is narrower than in_channels " + std::to_string(in_channels));
  // Position ids carry three axes (text index, row, column): other counts have no ids to rotate by.
  if (axes_dim.size() != 3)
    bad("RoPE has " + std::to_string(axes_dim.size()) + " axes (flux.rope.axes_dim), expected 3: index, row, column");
  const int64_t sum = std::accumulate(axes_dim.begin(), axes_dim.end(), int64_t{0});
  const bool odd = std::any_of(axes_dim.begin(), axes_dim.end(), [](int32_t a) { return a <= 0 || a % 2 != 0; });
  if (axes_dim.empty() || sum != head_dim || odd)
    bad("RoPE axes must be positive even sizes summing to head_dim " + std::to_string(head_dim));
  if (!(theta > 0.0f)) bad("RoPE theta must be positive");
}

FluxConfig FluxConfig::from_gguf(const GgufFile& file) {
  const std::string arch = file.get_string("general.architecture");
  if (arch != kArch) fail(ErrorCategory::UNSUPPORTED, file.name() + ": architecture '" + arch + "' is not flux");
  FluxConfig c;
  c.in_channels = dim_of(file, "img_in.weight", 2, 0);
  c.hidden = dim_of(file, "img_in.weight", 2, 1);
  c.context_in_dim = dim_of(file, "txt_in.weight", 2, 0);
  c.vec_in_dim = dim_of(file, "vector_in.in_layer.weight", 2, 0);
  c.timestep_dim = dim_of(file, "time_in.in_layer.weight", 2, 0);
  c.has_guidance = file.find_tensor("guidance_in.in_layer.weight") != nullptr;
  c.n_double = block_count(file, "double_blocks.");
  c.n_single = block_count(file, "single_blocks.");
  if (c.n_double > 0) {
    c.head_dim = dim_of(file, flux_double_name(0, FluxStream::IMG, "attn.norm.query_norm.scale"), 1, 0);
    c.mlp_hidden = dim_of(file, flux_double_name(0, FluxStream::IMG, "mlp.0.weight"), 2, 1);
  } else if (c.n_single > 0) {
    c.head_dim = dim_of(file, flux_single_name(0, "norm.query_norm.scale"), 1, 0);
    c.mlp_hidden = dim_of(file, flux_single_name(0, "linear1.weight"), 2, 1) - 3 * c.hidden;
  } else {
    fail(ErrorCategory::FORMAT, file.name() +
                                    ": tensor 'double_blocks.0.img_mod.lin.weight' is missing (a flux "
                                    "model has double_blocks.N and single_blocks.N tensors; found none)");
  }
  if (c.head_dim <= 0 || c.hidden % c.head_dim != 0)
    fail(ErrorCategory::FORMAT, file.name() + ": the q/k norm scales have " + std::to_string(c.head_dim) +
                                    " elements, which do not divide the width " + std::to_string(c.hidden));
  c.n_head = c.hidden / c.head_dim;
  if (const GgufValue* axes = file.find("flux.rope.axes_dim")) {
    c.axes_dim = axes->array_as<int32_t>("flux.rope.axes_dim");
  } else {
    c.axes_dim = default_axes(c.head_dim);
  }
  c.theta = file.get_optional<float>("flux.rope.freq_base").value_or(10000.0f);
  try {
    c.validate(file.name());
  } catch (const Error& e) {
    fail(ErrorCategory::FORMAT, e.what());
  }
  return c;
}

FluxWeights FluxWeights::from_gguf(const GgufFile& file, const FluxConfig& c) {
  const Reader r(file);
  const int64_t h = c.hidden, hd = c.head_dim;
  FluxWeights w;
  w.img_in = r.linear("img_in", c.in_channels, h);
  w.txt_in = r.linear("txt_in", c.context_in_dim, h);
  w.time_in = r.embedder("time_in", c.timestep_dim, h);
  w.vector_in = r.embedder("vector_in", c.vec_in_dim, h);
  if (c.has_guidance) w.guidance_in = r.embedder("guidance_in", c.timestep_dim, h);
  for (int64_t i = 0; i < c.n_double; ++i) {
    FluxDoubleWeights d{};
    for (FluxStream s : kStreams) {
      auto name = [&](std::string_view part) { return flux_double_name(i, s, part); };
      FluxStreamWeights& sw = s == FluxStream::IMG ? d.img : d.txt;
      sw.mod = r.linear(name("mod.lin"), h, 6 * h);
      sw.qkv = r.linear(name("attn.qkv"), h, 3 * h);
      sw.q_scale = r.vector(name("attn.norm.query_norm.scale"), hd);
      sw.k_scale = r.vector(name("attn.norm.key_norm.scale"), hd);
      sw.proj = r.linear(name("attn.proj"), h, h);
      sw.mlp0 = r.linear(name("mlp.0"), h, c.mlp_hidden);
      sw.mlp2 = r.linear(name("mlp.2"), c.mlp_hidden, h);
    }
    w.double_blocks.push_back(d);
  }
  for (int64_t i = 0; i < c.n_single; ++i) {
    FluxSingleWeights s{};
    s.linear1 = r.linear(flux_single_name(i, "linear1"), h, 3 * h + c.mlp_hidden);
    s.linear2 = r.linear(flux_single_name(i, "linear2"), h + c.mlp_hidden, h);
    s.modulation = r.linear(flux_single_name(i, "modulation.lin"), h, 3 * h);
    s.q_scale = r.vector(flux_single_name(i, "norm.query_norm.scale"), hd);
    s.k_scale = r.vector(flux_single_name(i, "norm.key_norm.scale"), hd);
    w.single_blocks.push_back(s);
  }
  w.final_mod = r.linear("final_layer.adaLN_modulation.1", h, 2 * h);
  w.final_linear = r.linear("final_layer.linear", h, c.out_channels());
  return w;
}

std::vector<FluxTensorSpec> flux_tensor_specs(const FluxConfig& c) {
  const int64_t h = c.hidden;
  std::vector<FluxTensorSpec> out;
  auto linear = [&](const std::string& name, int64_t in, int64_t n_out, FluxTensorKind kind, int64_t block) {
    out.push_back({name + ".weight", {in, n_out}, kind, block});
    out.push_back({name + ".bias", {n_out}, FluxTensorKind::VECTOR, block});
  };
  auto scale = [&](const std::string& name, int64_t block) {
    out.push_back({name + ".scale", {c.head_dim}, FluxTensorKind::VECTOR, block, true});
  };
  constexpr auto kOuter = FluxTensorKind::OUTER_MATRIX;
  constexpr auto kBlock = FluxTensorKind::BLOCK_MATRIX;
  linear("img_in", c.in_channels, h, kOuter, -1);
  linear("txt_in", c.context_in_dim, h, kOuter, -1);
  for (std::string_view e : {"time_in", "vector_in", "guidance_in"}) {
    if (e == "guidance_in" && !c.has_guidance) continue;
    const int64_t in = e == "vector_in" ? c.vec_in_dim : c.timestep_dim;
    linear(std::string(e) + ".in_layer", in, h, kOuter, -1);
    linear(std::string(e) + ".out_layer", h, h, kOuter, -1);
  }
  for (int64_t i = 0; i < c.n_double; ++i)
    for (FluxStream s : kStreams) {
      auto name = [&](std::string_view part) { return flux_double_name(i, s, part); };
      linear(name("mod.lin"), h, 6 * h, kBlock, i);
      linear(name("attn.qkv"), h, 3 * h, kBlock, i);
      scale(name("attn.norm.query_norm"), i);
      scale(name("attn.norm.key_norm"), i);
      linear(name("attn.proj"), h, h, kBlock, i);
      linear(name("mlp.0"), h, c.mlp_hidden, kBlock, i);
      linear(name("mlp.2"), c.mlp_hidden, h, kBlock, i);
    }
  for (int64_t i = 0; i < c.n_single; ++i) {
    const int64_t b = c.n_double + i;
    linear(flux_single_name(i, "linear1"), h, 3 * h + c.mlp_hidden, kBlock, b);
    linear(flux_single_name(i, "linear2"), h + c.mlp_hidden, h, kBlock, b);
    linear(flux_single_name(i, "modulation.lin"), h, 3 * h, kBlock, b);
    scale(flux_single_name(i, "norm.query_norm"), b);
    scale(flux_single_name(i, "norm.key_norm"), b);
  }
  linear("final_layer.adaLN_modulation.1", h, 2 * h, kOuter, -1);
  linear("final_layer.linear", h, c.out_channels(), kOuter, -1);
  return out;
}

}  // namespace ferry
