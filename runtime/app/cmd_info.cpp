// `ferry info MODEL [--json]`: what a GGUF file holds. The human form is a summary (architecture and its shape keys),
// every metadata key with its type, bytes per tensor type, and the tensor table with shapes in ne order (ne[0] is the
// contiguous dimension, as the file stores it). The JSON form is documented in json_output.hpp.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "json_output.hpp"
#include "value_text.hpp"

namespace ferry::cli {
namespace {

struct InfoOptions {
  std::string model;
  bool json = false;
};

// general.file_type values (llama.cpp's LLAMA_FTYPE); ids 4-6 and 33-35 were removed from the format.
std::string file_type_name(uint64_t id) {
  static const std::map<uint64_t, const char*> kNames = {
      {0, "ALL_F32"},           {1, "MOSTLY_F16"},     {2, "MOSTLY_Q4_0"},    {3, "MOSTLY_Q4_1"},
      {7, "MOSTLY_Q8_0"},       {8, "MOSTLY_Q5_0"},    {9, "MOSTLY_Q5_1"},    {10, "MOSTLY_Q2_K"},
      {11, "MOSTLY_Q3_K_S"},    {12, "MOSTLY_Q3_K_M"}, {13, "MOSTLY_Q3_K_L"}, {14, "MOSTLY_Q4_K_S"},
      {15, "MOSTLY_Q4_K_M"},    {16, "MOSTLY_Q5_K_S"}, {17, "MOSTLY_Q5_K_M"}, {18, "MOSTLY_Q6_K"},
      {19, "MOSTLY_IQ2_XXS"},   {20, "MOSTLY_IQ2_XS"}, {21, "MOSTLY_Q2_K_S"}, {22, "MOSTLY_IQ3_XS"},
      {23, "MOSTLY_IQ3_XXS"},   {24, "MOSTLY_IQ1_S"},  {25, "MOSTLY_IQ4_NL"}, {26, "MOSTLY_IQ3_S"},
      {27, "MOSTLY_IQ3_M"},     {28, "MOSTLY_IQ2_S"},  {29, "MOSTLY_IQ2_M"},  {30, "MOSTLY_IQ4_XS"},
      {31, "MOSTLY_IQ1_M"},     {32, "MOSTLY_BF16"},   {36, "MOSTLY_TQ1_0"},  {37, "MOSTLY_TQ2_0"},
      {38, "MOSTLY_MXFP4_MOE"}, {1024, "GUESSED"},
  };
  auto it = kNames.find(id);
  return it == kNames.end() ? "unknown" : it->second;
}

std::string pad_right(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string pad_left(std::string s, size_t width) {
  if (s.size() < width) s.insert(0, width - s.size(), ' ');
  return s;
}

std::string shape_text(const std::vector<int64_t>& ne) {
  std::string out;
  for (size_t i = 0; i < ne.size(); ++i) out += concat(i ? " x " : "", std::to_string(ne[i]));
  return out;
}

// A table printed with every column as wide as its widest cell; `right` marks right-aligned (numeric) columns.
void print_table(std::string& out, const std::vector<std::vector<std::string>>& rows, const std::vector<bool>& right) {
  std::vector<size_t> width(right.size(), 0);
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  for (const auto& row : rows) {
    std::string line = " ";
    for (size_t c = 0; c < row.size(); ++c) {
      line += ' ';
      const bool last = c + 1 == row.size();
      line += right[c] ? pad_left(row[c], width[c]) : (last ? row[c] : pad_right(row[c], width[c]));
      if (!last) line += ' ';
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + '\n';
  }
}

void append_summary(std::string& out, const GgufFile& file) {
  std::vector<std::vector<std::string>> rows;
  // Plain strings unquoted for reading; any with control bytes or over-long go through the escaping, quoted form.
  auto text_of = [](const GgufValue& v) {
    if (v.type() != GgufValueType::STRING) return value_to_text(v);
    const std::string& s = v.as_string("summary");
    const bool plain = s.size() <= TextLimits{}.max_string_bytes &&
                       std::none_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
    return plain ? s : value_to_text(v);
  };
  std::string arch;
  if (const GgufValue* v = file.find("general.architecture")) {
    arch = v->type() == GgufValueType::STRING ? v->as_string("general.architecture") : "";
    rows.push_back({"architecture", text_of(*v)});
  }
  if (const GgufValue* v = file.find("general.name")) rows.push_back({"name", text_of(*v)});
  if (const GgufValue* v = file.find("general.file_type")) {
    std::string text = value_to_text(*v);
    // Named only when it is a non-negative integer; any other value is still listed, as it is.
    if (v->type() != GgufValueType::ARRAY && v->type() != GgufValueType::STRING) {
      try {
        text += concat(" (", file_type_name(v->as<uint64_t>("key 'general.file_type' in " + file.name())), ")");
      } catch (const Error&) {
      }
    }
    rows.push_back({"file_type", text});
  }
  // The shape keys of the architecture, in the order a reader of a model card looks for them.
  static constexpr const char* kArchKeys[] = {
      "context_length",
      "embedding_length",
      "block_count",
      "feed_forward_length",
      "attention.head_count",
      "attention.head_count_kv",
      "attention.key_length",
      "attention.value_length",
      "attention.layer_norm_rms_epsilon",
      "rope.dimension_count",
      "rope.freq_base",
      "expert_count",
      "expert_used_count",
      "vocab_size",
  };
  if (!arch.empty())
    for (const char* suffix : kArchKeys)
      if (const GgufValue* v = file.find(arch + "." + suffix)) rows.push_back({suffix, text_of(*v)});
  if (const GgufValue* v = file.find("tokenizer.ggml.model")) rows.push_back({"tokenizer", text_of(*v)});
  if (const GgufValue* v = file.find("tokenizer.ggml.tokens"); v && v->is_array())
    rows.push_back({"vocabulary", std::to_string(v->array_size()) + " tokens"});
  if (rows.empty()) return;
  out += "summary\n";
  print_table(out, rows, {false, false});
}

// A key or tensor name as printed: as is, unless it holds control bytes (a hostile file could drive the terminal with
// them); then quoted and escaped like string values.
std::string printable_name(const std::string& name) {
  const bool plain = std::none_of(name.begin(), name.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
  return plain ? name : quote_string(name);
}

void append_metadata(std::string& out, const GgufFile& file) {
  out += concat("metadata (", std::to_string(file.metadata().size()), " keys)\n");
  std::vector<std::vector<std::string>> rows;
  for (const GgufKeyValue& kv : file.metadata())
    rows.push_back({printable_name(kv.key), value_type_text(kv.value), value_to_text(kv.value)});
  print_table(out, rows, {false, false, false});
}

void append_bytes_per_type(std::string& out, const GgufFile& file) {
  struct Totals {
    uint64_t tensors = 0, bytes = 0, elements = 0;
  };
  std::map<uint32_t, Totals> by_type;  // ordered by type id, so the table is stable
  uint64_t total = 0;
  for (const GgufTensorInfo& t : file.tensors()) {
    Totals& s = by_type[static_cast<uint32_t>(t.type)];
    ++s.tensors;
    s.bytes += t.n_bytes;
    s.elements += static_cast<uint64_t>(t.n_elements);
    total += t.n_bytes;
  }
  out += concat("tensor bytes by type (", human_bytes(total), " in all)\n");
  std::vector<std::vector<std::string>> rows = {
      {"type", "tensors", "elements", "bytes", "size", "share", "bits/weight"}};
  for (const auto& [id, s] : by_type) {
    char share[32], bpw[32];
    std::snprintf(share, sizeof share, "%.1f%%", total ? 100.0 * static_cast<double>(s.bytes) / total : 0.0);
    std::snprintf(bpw, sizeof bpw, "%.2f", s.elements ? 8.0 * static_cast<double>(s.bytes) / s.elements : 0.0);
    rows.push_back({std::string(type_name(static_cast<GgmlType>(id))), std::to_string(s.tensors),
                    std::to_string(s.elements), std::to_string(s.bytes), human_bytes(s.bytes), share, bpw});
  }
  print_table(out, rows, {false, true, true, true, true, true, true});
}

void append_tensors(std::string& out, const GgufFile& file) {
  out += concat("tensors (", std::to_string(file.tensors().size()), ")\n");
  std::vector<std::vector<std::string>> rows = {{"#", "name", "type", "ne", "file_offset", "bytes"}};
  size_t index = 0;
  for (const GgufTensorInfo& t : file.tensors())
    rows.push_back({std::to_string(index++), printable_name(t.name), std::string(type_name(t.type)), shape_text(t.ne),
                    std::to_string(t.file_offset), std::to_string(t.n_bytes)});
  print_table(out, rows, {true, false, false, false, true, true});
}

std::string human_form(const GgufFile& file) {
  std::string out =
      concat(file.name(), ": GGUF v", std::to_string(file.version()), ", ", std::to_string(file.tensors().size()),
             " tensors, ", std::to_string(file.metadata().size()), " metadata keys, ", human_bytes(file.file_size()),
             " (", std::to_string(file.file_size()), " bytes)\n");
  out += concat("alignment ", std::to_string(file.alignment()), ", tensor data at offset ",
                std::to_string(file.data_offset()), "\n\n");
  const size_t before = out.size();
  append_summary(out, file);
  if (out.size() != before) out += '\n';
  append_metadata(out, file);
  out += '\n';
  append_bytes_per_type(out, file);
  out += '\n';
  append_tensors(out, file);
  return out;
}

int run_info(const InfoOptions& options) {
  const GgufFile file = GgufFile::open(options.model);
  const std::string text = options.json ? dump_json(file_to_json(file)) + "\n" : human_form(file);
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
    fail(ErrorCategory::IO, "info: cannot write to standard output");
  return 0;
}

}  // namespace

Action add_info_command(CLI::App& app) {
  auto options = std::make_shared<InfoOptions>();
  CLI::App* sub = app.add_subcommand("info", "Show a GGUF file's metadata, tensor table and bytes per type");
  sub->add_option("MODEL", options->model, "GGUF file")->required();
  sub->add_flag("--json", options->json,
                "Print JSON: {version, alignment, metadata, tensors: [{name, type, ne, file_offset, n_bytes}]}");
  return [options] { return run_info(*options); };
}

}  // namespace ferry::cli
