#include "mapping_fault_guard.hpp"

#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "signal_default.hpp"

namespace ferry::detail {
namespace {

// A process maps a model or two at a time; 64 is ample.
constexpr int kSlots = 64;

enum SlotState : int { FREE, FILLING, LIVE };

struct Slot {
  std::atomic<int> state{FREE};
  uintptr_t begin = 0, end = 0;  // whole pages: a fault lands anywhere in the last page
  size_t path_length = 0;
  char path[PATH_MAX];
};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs lock-free slot states");

Slot g_slots[kSlots];
struct sigaction g_previous {};

// write(2) until done: the only output an async-signal handler may use.
void write_all(const char* text, size_t length) {
  while (length > 0) {
    const ssize_t n = ::write(STDERR_FILENO, text, length);
    if (n <= 0) return;
    text += n;
    length -= static_cast<size_t>(n);
  }
}

void write_text(const char* text) { write_all(text, std::strlen(text)); }

void on_bus_error(int sig, siginfo_t* info, void* context) {
  // si_addr is the faulting address only for faults the kernel raised (si_code > 0), not for a kill(2).
  if (info && info->si_code > 0) {
    const auto address = reinterpret_cast<uintptr_t>(info->si_addr);
    for (const Slot& slot : g_slots) {
      if (slot.state.load(std::memory_order_acquire) != LIVE || address < slot.begin || address >= slot.end) continue;
      write_text("ferry: I/O error: ");
      write_all(slot.path, slot.path_length);
      write_text(
          ": the file changed while it was in use (truncated or overwritten); ferry needs the model file unchanged "
          "while it runs\n");
      ::_exit(1);
    }
  }
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction) return g_previous.sa_sigaction(sig, info, context);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    return g_previous.sa_handler(sig);
  }
  reraise_with_default_action(sig);
}

void install_handler() noexcept {
  struct sigaction action {};
  action.sa_sigaction = on_bus_error;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGBUS, &action, &g_previous);
}

}  // namespace

int register_mapping(const void* begin, size_t size, const char* path) noexcept {
  static const bool installed = (install_handler(), true);
  (void)installed;
  const size_t length = std::strlen(path);
  if (length >= PATH_MAX || size == 0) return -1;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  for (int i = 0; i < kSlots; ++i) {
    Slot& slot = g_slots[i];
    int expected = FREE;
    if (!slot.state.compare_exchange_strong(expected, FILLING, std::memory_order_acquire)) continue;
    slot.begin = reinterpret_cast<uintptr_t>(begin);
    slot.end = (slot.begin + size + page - 1) / page * page;
    std::memcpy(slot.path, path, length + 1);
    slot.path_length = length;
    slot.state.store(LIVE, std::memory_order_release);
    return i;
  }
  return -1;
}

void unregister_mapping(int slot) noexcept {
  if (slot < 0 || slot >= kSlots) return;
  g_slots[slot].state.store(FREE, std::memory_order_release);
}

}  // namespace ferry::detail
