// Whether this test binary runs under AddressSanitizer: its quarantine keeps freed memory resident and its shadow
// memory reserves terabytes of address space, so checks of resident memory and address-space limits do not apply.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define FERRY_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FERRY_TEST_ASAN 1
#endif
#endif

namespace ferry::test {
#if defined(FERRY_TEST_ASAN)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
}  // namespace ferry::test
