// Helpers for the forked children that isolate libhdf5 (hdf5_file.cpp's read
// probe, gate.cpp's report decoder). Linux-only, like the forks themselves.
#pragma once
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

namespace mlalora::harness::detail {

// Call first thing in a forked child, with the parent's pid taken before the
// fork: the child is SIGKILLed when its parent dies. The decoder child forks
// the probe in turn; when the gate kills a decoder that timed out on a file
// libhdf5 loops on, the probe must not live on as an orphan spinning at 100%
// CPU (it did, before this).
inline void die_with_parent(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(1);  // the parent died before prctl took effect
}

}  // namespace mlalora::harness::detail
