#include "signal_cleanup.hpp"

#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "signal_default.hpp"

namespace ferry::detail {
namespace {

// A process has a handful of AtomicFiles open at once (one per output being written); 64 is ample.
constexpr int kSlots = 64;

enum SlotState : int {
  FREE,
  FILLING,  // claimed by register_temporary, path being copied in
  LIVE,     // a temporary that exists (or is about to be created)
  DYING,    // taken by the signal handler; never reused, the process is ending
};

struct Slot {
  std::atomic<int> state{FREE};
  char path[PATH_MAX];
};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs lock-free slot states");

Slot g_slots[kSlots];

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};

void remove_temporaries_and_reraise(int sig) {
  for (Slot& slot : g_slots) {
    int expected = LIVE;
    if (slot.state.compare_exchange_strong(expected, DYING, std::memory_order_acquire)) ::unlink(slot.path);
  }
  reraise_with_default_action(sig);
}

void install_handlers() noexcept {
  struct sigaction action {};
  action.sa_handler = remove_temporaries_and_reraise;
  action.sa_flags = SA_RESTART;
  // The three signals block one another while the handler runs: a second one must not re-raise (and end the process)
  // before the first has unlinked every temporary.
  sigemptyset(&action.sa_mask);
  for (int sig : kSignals) sigaddset(&action.sa_mask, sig);
  for (int sig : kSignals) {
    struct sigaction current {};
    if (::sigaction(sig, nullptr, &current) != 0) continue;
    if ((current.sa_flags & SA_SIGINFO) == 0 && current.sa_handler == SIG_DFL) ::sigaction(sig, &action, nullptr);
  }
}

}  // namespace

int register_temporary(const char* path) noexcept {
  static const bool installed = (install_handlers(), true);
  (void)installed;
  const size_t length = std::strlen(path);
  if (length >= PATH_MAX) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = FREE;
    if (!g_slots[i].state.compare_exchange_strong(expected, FILLING, std::memory_order_acquire)) continue;
    std::memcpy(g_slots[i].path, path, length + 1);
    g_slots[i].state.store(LIVE, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_temporary(int slot) noexcept {
  if (slot < 0 || slot >= kSlots) return;
  int expected = LIVE;
  g_slots[slot].state.compare_exchange_strong(expected, FREE, std::memory_order_release);
}

}  // namespace ferry::detail
