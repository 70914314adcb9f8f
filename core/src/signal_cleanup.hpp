// Removing live temporaries when the process is interrupted. A Ctrl-C, a `kill` or a closed terminal (SIGINT, SIGTERM,
// SIGHUP) ends the process without unwinding, so AtomicFile's destructor never runs and a half-written temporary
// (gigabytes for a large `make-model`) would stay. Live temporaries are kept in a fixed table that a signal handler can
// read without allocating or locking; the handler unlinks them, then re-raises the signal with its default action so
// the process still ends "killed by signal", as a shell and a supervisor expect.
//
// The handlers are installed the first time a temporary is registered, only for signals whose action is still the
// default: a handler the program installed itself, or a signal it ignores (nohup), is left alone.
#pragma once

namespace ferry::detail {

// Records `path` (absolute, so a later chdir cannot redirect it) as a live temporary. Returns a slot to unregister, or
// -1 when the table is full or the path too long: that temporary is then only removed by a later write's sweep of
// stale temporaries (temporary_names.hpp).
int register_temporary(const char* path) noexcept;

// Forgets a slot from register_temporary (-1 is ignored). Call it after the temporary was renamed or removed, so an
// interruption in between unlinks a path that no longer exists rather than leaving a file behind.
void unregister_temporary(int slot) noexcept;

}  // namespace ferry::detail
