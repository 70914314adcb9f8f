// libFuzzer target for the GGUF reader (and the tokenizer built from a file's vocabulary): any input must either parse
// into a GgufFile whose every advertised byte is readable, or be refused with ferry::Error. Anything else (a crash, a
// sanitizer report, another exception type, an allocation beyond libFuzzer's -malloc_limit_mb) is a finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/text/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const ferry::GgufFile file = ferry::GgufFile::from_memory(bytes, "fuzz.gguf");
    // Touch every value and every tensor byte so a range the validator let through is read under ASan.
    uint64_t sum = file.alignment() + file.data_offset();
    for (const auto& kv : file.metadata()) {
      sum += kv.key.size() + kv.value.array_size() + kv.value.scalar_bits() + kv.value.array_bytes().size();
      if (kv.value.type() == ferry::GgufValueType::STRING) sum += kv.value.as_string(kv.key).size();
      if (kv.value.is_array() && kv.value.array_type() == ferry::GgufValueType::STRING)
        for (const auto& s : kv.value.as_string_array(kv.key)) sum += s.size();
      if (kv.value.is_array() && kv.value.array_type() != ferry::GgufValueType::STRING) {
        try {  // conversions may legitimately refuse (a negative value read as unsigned), never crash
          for (int64_t v : kv.value.array_as<int64_t>(kv.key)) sum += static_cast<uint64_t>(v);
        } catch (const ferry::Error&) {
        }
      }
    }
    for (const auto& t : file.tensors()) {
      if (file.find_tensor(t.name) == nullptr) __builtin_trap();  // names are unique and findable
      sum += static_cast<uint64_t>(t.rows());
      for (std::byte b : file.tensor_data(t)) sum += static_cast<uint8_t>(b);
    }
    // The vocabulary is file data too: building a tokenizer from it and using it must refuse or work, never crash.
    try {
      const ferry::Tokenizer tokenizer = ferry::Tokenizer::from_gguf(file);
      const auto ids = tokenizer.encode("Hello world, \xC3\xA9t\xC3\xA9 <0x41> 12!", true);
      sum += tokenizer.decode(ids).size();
      for (size_t id = 0; id < tokenizer.vocab_size() && id < 512; ++id)
        sum += tokenizer.token_to_piece(static_cast<int32_t>(id)).size();
    } catch (const ferry::Error&) {
    }
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const ferry::Error&) {
    // Refused with a message: the expected outcome for most inputs.
  }
  return 0;
}
