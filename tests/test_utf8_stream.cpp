// Utf8Stream: token pieces in, whole UTF-8 characters out. Characters split at every possible byte come out whole
// and once; what can never complete becomes U+FFFD per maximal subpart (the expected strings are Python's
// bytes.decode("utf-8", "replace")); chunking never changes the result, and the output is always well formed.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "ferry/text/utf8.hpp"
#include "ferry/text/utf8_stream.hpp"
#include "support/seed.hpp"

using ferry::Utf8Stream;

namespace {

const std::string kFffd = "\xEF\xBF\xBD";

std::string all_at_once(std::string_view bytes) {
  Utf8Stream s;
  std::string out = s.push(bytes);  // two statements: the operands of + are evaluated in no fixed order
  return out + s.flush();
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

}  // namespace

TEST_CASE("utf8 stream: a character split anywhere is held back, then given whole") {
  const std::string text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";  // a é € 😀 z
  for (size_t cut1 = 0; cut1 <= text.size(); ++cut1)
    for (size_t cut2 = cut1; cut2 <= text.size(); ++cut2) {
      CAPTURE(cut1);
      CAPTURE(cut2);
      Utf8Stream s;
      const std::string parts[] = {s.push(text.substr(0, cut1)), s.push(text.substr(cut1, cut2 - cut1)),
                                   s.push(text.substr(cut2)), s.flush()};
      std::string joined;
      for (const std::string& p : parts) {
        CHECK(ferry::first_invalid_utf8(p) == ferry::kValidUtf8);  // never half a character
        joined += p;
      }
      CHECK(joined == text);
    }
}

TEST_CASE("utf8 stream: what is held back, and for how long") {
  Utf8Stream s;
  CHECK(s.push("\xF0\x9F") == "");
  CHECK(s.pending() == 2);
  CHECK(s.push("\x98") == "");
  CHECK(s.pending() == 3);
  CHECK(s.push("\x80!") == "\xF0\x9F\x98\x80!");
  CHECK(s.pending() == 0);
  CHECK(s.flush() == "");
  // Flushed mid-character: one replacement, and the stream starts afresh.
  CHECK(s.push("\xE2\x82") == "");
  CHECK(s.flush() == kFffd);
  CHECK(s.push("ok") == "ok");
}

TEST_CASE("utf8 stream: bytes that can never complete become U+FFFD per maximal subpart") {
  struct Case {
    std::string in, out;
  };
  const std::vector<Case> cases = {
      {"\xED\xA0\x80", repeat(kFffd, 3)},      // a surrogate: ED takes only 80..9F next
      {"\xC0\xAF", repeat(kFffd, 2)},          // an overlong '/'
      {"\xF4\x90\x80\x80", repeat(kFffd, 4)},  // above U+10FFFF
      {"\xE0\x80\x80", repeat(kFffd, 3)},      // overlong: E0 takes only A0..BF next
      {"\xF0\x80\x80\x80", repeat(kFffd, 4)},  // overlong: F0 takes only 90..BF next
      {"\xE2\x82"
       "A",
       kFffd + "A"},            // a truncated character is one replacement
      {"\xF0\x9F\x98", kFffd},  // truncated at the end (flush)
      {"a\x80\x80"
       "b",
       "a\xEF\xBF\xBD\xEF\xBF\xBD"
       "b"},                                             // stray continuation bytes, each alone
      {"\xE2\x82\xE2\x82\xAC", kFffd + "\xE2\x82\xAC"},  // a new lead ends the subpart and starts a character
      {"\xFF\xFE", repeat(kFffd, 2)},
  };
  for (const Case& c : cases) {
    CAPTURE(c.in);
    CHECK(all_at_once(c.in) == c.out);
  }
}

TEST_CASE("utf8 stream: random text and random bytes, in random chunks, give what one push gives") {
  std::mt19937 rng(static_cast<uint32_t>(ferry::test::test_seed(701)));
  auto append_code_point = [](std::string& s, uint32_t cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  };
  for (int round = 0; round < 400; ++round) {
    const bool valid = round % 2 == 0;
    std::string bytes;
    const int n = 1 + static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) {
      if (valid) {
        const uint32_t limits[] = {0x80, 0x800, 0x10000, 0x110000};
        uint32_t cp = rng() % limits[rng() % 4];
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
        append_code_point(bytes, cp);
      } else {
        bytes += static_cast<char>(rng() % 4 == 0 ? 0x80 + rng() % 0x80 : rng() % 256);
      }
    }
    const std::string whole = all_at_once(bytes);
    CHECK(ferry::first_invalid_utf8(whole) == ferry::kValidUtf8);
    if (valid) CHECK(whole == bytes);
    Utf8Stream s;
    std::string chunked;
    for (size_t at = 0; at < bytes.size();) {
      const size_t len = std::min<size_t>(bytes.size() - at, rng() % 5);
      const std::string out = s.push(std::string_view(bytes).substr(at, len));
      CHECK(ferry::first_invalid_utf8(out) == ferry::kValidUtf8);
      chunked += out;
      at += len;
    }
    chunked += s.flush();
    CHECK(chunked == whole);
  }
}
