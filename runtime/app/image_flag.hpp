// --image WxH, as the Flux commands (`flux-step`, `plan` of a Flux file) take it: pixels, multiples of 16 (8 pixels
// per latent, 2 x 2 latents per token).
#pragma once

#include <cstdint>
#include <string>

namespace ferry::cli {

struct ImageSize {
  int64_t width = 0, height = 0;
  int64_t tokens() const noexcept { return (width / 16) * (height / 16); }  // image tokens of a Flux step
};

// "WxH".
std::string size_text(int64_t width, int64_t height);
// "WxH", both multiples of 16; else bad_flag("--image") naming the nearest valid sizes.
ImageSize image_flag(const std::string& text);

}  // namespace ferry::cli
