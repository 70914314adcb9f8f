// Ending a process "by the signal" from inside a handler: what ferry's handlers do once their own work is done, so the
// exit status stays "killed by SIGTERM" (or SIGBUS) for the shell and the parent. Async-signal-safe.
#pragma once

#include <signal.h>

namespace ferry::detail {

// Restores the default action of `sig`, unblocks it and raises it again.
inline void reraise_with_default_action(int sig) noexcept {
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  ::sigaction(sig, &default_action, nullptr);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, sig);
  ::sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
  ::raise(sig);
}

}  // namespace ferry::detail
