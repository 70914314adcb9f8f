#include "ferry/text/special_tokens.hpp"

#include <algorithm>
#include <unordered_set>

namespace ferry {

SpecialTokenMatcher::SpecialTokenMatcher(std::vector<Token> tokens) {
  std::unordered_set<std::string> seen;
  for (Token& t : tokens)
    if (!t.text.empty() && seen.insert(t.text).second) m_tokens.push_back(std::move(t));
  for (uint32_t i = 0; i < m_tokens.size(); ++i)
    m_by_first_byte[static_cast<unsigned char>(m_tokens[i].text[0])].push_back(i);
  for (auto& candidates : m_by_first_byte)
    std::stable_sort(candidates.begin(), candidates.end(),
                     [&](uint32_t a, uint32_t b) { return m_tokens[a].text.size() > m_tokens[b].text.size(); });
}

std::vector<SpecialTokenMatcher::Fragment> SpecialTokenMatcher::partition(std::string_view text,
                                                                          bool parse_control) const {
  std::vector<Fragment> out;
  size_t plain = 0;  // start of the plain text not yet emitted
  for (size_t at = 0; at < text.size();) {
    const Token* found = nullptr;
    for (uint32_t index : m_by_first_byte[static_cast<unsigned char>(text[at])]) {
      const Token& t = m_tokens[index];
      if ((parse_control || t.always) && text.compare(at, t.text.size(), t.text) == 0) {
        found = &t;
        break;
      }
    }
    if (found == nullptr) {
      ++at;
      continue;
    }
    if (at > plain) out.push_back({text.substr(plain, at - plain), -1});
    out.push_back({text.substr(at, found->text.size()), found->id});
    at += found->text.size();
    plain = at;
  }
  if (plain < text.size()) out.push_back({text.substr(plain), -1});
  return out;
}

}  // namespace ferry
