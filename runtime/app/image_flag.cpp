#include "image_flag.hpp"

#include <algorithm>
#include <string>

#include "ferry/error.hpp"
#include "model_command.hpp"

namespace ferry::cli {

std::string size_text(int64_t w, int64_t h) { return std::to_string(w) + "x" + std::to_string(h); }

ImageSize image_flag(const std::string& text) {
  const size_t x = text.find_first_of("xX");
  auto number = [&](const std::string& s) -> int64_t {
    if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stoll(s);
  };
  const int64_t w = x == std::string::npos ? -1 : number(text.substr(0, x));
  const int64_t h = x == std::string::npos ? -1 : number(text.substr(x + 1));
  if (w <= 0 || h <= 0) bad_flag("--image", quote_name(text) + " is not WIDTHxHEIGHT in pixels (e.g. 1024x1024)");
  if (w % 16 != 0 || h % 16 != 0) {
    auto down = [](int64_t v) { return std::max<int64_t>(16, v / 16 * 16); };
    auto up = [](int64_t v) { return (v + 15) / 16 * 16; };
    auto nearest = [&](int64_t v) { return v - down(v) < up(v) - v ? down(v) : up(v); };
    bad_flag("--image", text + ": width and height must be multiples of 16; the nearest valid size is " +
                            size_text(nearest(w), nearest(h)) + " (rounded down " + size_text(down(w), down(h)) +
                            ", up " + size_text(up(w), up(h)) + ")");
  }
  return {w, h};
}

}  // namespace ferry::cli
