// Whether a model's prompts start with BOS, as llama.cpp decides it (llama-vocab.cpp): the file's
// tokenizer.ggml.add_bos_token when present; otherwise true for SentencePiece vocabularies ('llama'), and for
// byte-level BPE ('gpt2') only under the pre-tokenizers of the Llama-3 family, which llama.cpp marks as adding BOS.
// SmolLM2, a 'gpt2' vocabulary with add_bos_token = false, gets none: its BOS id is <|im_start|>, a chat marker.
#pragma once

namespace ferry {

class GgufFile;

// Throws FORMAT naming the key when tokenizer.ggml.add_bos_token is present but not a bool.
bool model_adds_bos(const GgufFile& file);

}  // namespace ferry
