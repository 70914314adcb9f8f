#include "ferry/policies/plan_file.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "ferry/error.hpp"

namespace ferry {
namespace {

using Json = nlohmann::json;

[[noreturn]] void bad_key(const std::string& path, const std::string& key, const std::string& why) {
  fail(ErrorCategory::FORMAT, "plan file " + path + ": " + key + ": " + why);
}

std::string type_of(const Json& j) { return j.type_name(); }

const Json& field(const Json& object, const std::string& name, const std::string& key, const std::string& path) {
  const auto it = object.find(name);
  if (it == object.end()) bad_key(path, key, "missing");
  return *it;
}

std::optional<double> rate(const Json& predicted, const char* name, const std::string& path) {
  const auto it = predicted.find(name);
  if (it == predicted.end() || it->is_null()) return std::nullopt;
  if (!it->is_number() || it->get<double>() < 0.0)
    bad_key(path, std::string("predicted.") + name, "expected a rate of zero or more, found " + it->dump());
  return it->get<double>();
}

}  // namespace

PlanFile parse_plan_file(std::string_view text, const std::string& path) {
  PlanFile file;
  file.path = path;
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::parse_error& e) {
    fail(ErrorCategory::FORMAT, "plan file " + path + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object())
    bad_key(path, "(top level)", "expected an object as `ferry plan --json` writes, found " + type_of(j));
  const Json& layers = field(j, "layers", "layers", path);
  if (!layers.is_array() || layers.empty())
    bad_key(path, "layers", "expected a non-empty array of {\"name\", \"placement\"}, found " + type_of(layers));
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string key = "layers[" + std::to_string(i) + "]";
    const Json& l = layers[i];
    if (!l.is_object()) bad_key(path, key, "expected an object {\"name\", \"placement\"}, found " + type_of(l));
    if (const auto index = l.find("index"); index != l.end())
      if (!index->is_number_unsigned() || index->get<uint64_t>() != i)
        bad_key(path, key + ".index",
                index->dump() + " is not the entry's position " + std::to_string(i) +
                    " (layers are listed in order; remove or renumber it)");
    const Json& name = field(l, "name", key + ".name", path);
    if (!name.is_string()) bad_key(path, key + ".name", "expected a string, found " + type_of(name));
    const Json& placement = field(l, "placement", key + ".placement", path);
    if (!placement.is_string()) bad_key(path, key + ".placement", "expected a string, found " + type_of(placement));
    const std::optional<Placement> p = parse_placement(placement.get<std::string>());
    if (!p)
      bad_key(path, key + ".placement",
              quote_name(placement.get<std::string>()) + " is not a placement (resident, streamed, cpu or phased)");
    file.names.push_back(name.get<std::string>());
    file.placements.push_back(*p);
  }
  if (const auto budget = j.find("budget_bytes"); budget != j.end()) {
    if (!budget->is_number_unsigned())
      bad_key(path, "budget_bytes", "expected a whole number of bytes, found " + budget->dump());
    file.budget_bytes = budget->get<uint64_t>();
  }
  if (const auto threshold = j.find("phased_cpu_max_tokens"); threshold != j.end()) {
    if (!threshold->is_number_unsigned())
      bad_key(path, "phased_cpu_max_tokens", "expected a whole number of tokens, found " + threshold->dump());
    if (threshold->get<uint64_t>() > uint64_t{1} << 40)
      bad_key(path, "phased_cpu_max_tokens", threshold->dump() + " tokens is more than any step holds (at most 2^40)");
    file.phased_cpu_max_tokens = threshold->get<int64_t>();
  }
  if (const auto predicted = j.find("predicted"); predicted != j.end() && !predicted->is_null()) {
    if (!predicted->is_object()) bad_key(path, "predicted", "expected null or an object, found " + type_of(*predicted));
    file.predicted_prompt_tokens_per_s = rate(*predicted, "prompt_tokens_per_s", path);
    file.predicted_generate_tokens_per_s = rate(*predicted, "generate_tokens_per_s", path);
  }
  return file;
}

PlanFile read_plan_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCategory::IO, "plan file " + path + ": cannot be read: " + std::strerror(errno));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(ErrorCategory::IO, "plan file " + path + ": cannot be read: " + std::strerror(errno));
  return parse_plan_file(text, path);
}

std::vector<Placement> plan_file_placements(const PlanFile& file, const StackProfile& stack) {
  if (file.placements.size() != stack.layers.size())
    bad_key(file.path, "layers",
            std::to_string(file.placements.size()) + " entries, but the model has " +
                std::to_string(stack.layers.size()) + " layers (" + stack.layers.front().name + " .. " +
                stack.layers.back().name + "): was the plan made for another model?");
  for (size_t i = 0; i < file.names.size(); ++i)
    if (file.names[i] != stack.layers[i].name)
      bad_key(file.path, "layers[" + std::to_string(i) + "].name",
              quote_name(file.names[i]) + " is not the model's layer " + std::to_string(i) + " '" +
                  stack.layers[i].name + "' (layers are listed in the model's order)");
  return file.placements;
}

}  // namespace ferry
