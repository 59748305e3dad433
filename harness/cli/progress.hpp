// A progress bar on stderr for long runs: redrawn in place on a terminal,
// a line every 10% otherwise (so CI logs stay readable).
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace mlalora::cli {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true)
      : label_(std::move(label)), total_(total), enabled_(enabled && total > 0), tty_(isatty(2)),
        start_(std::chrono::steady_clock::now()) {}
  void tick(int64_t done, const std::string& note = "") {
    if (!enabled_) return;
    const int pct = static_cast<int>(100 * done / total_);
    if (!tty_) {
      if (pct / 10 == last_decile_ && done != total_) return;
      last_decile_ = pct / 10;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const int width = 30, fill = static_cast<int>(width * done / total_);
    std::string bar(static_cast<size_t>(fill), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "%s%s [%s] %lld/%lld %3d%% %.1fs %s%s", tty_ ? "\r" : "", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), pct, secs, note.c_str(),
                 tty_ ? "\033[K" : "\n");
    if (tty_ && done == total_) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace mlalora::cli
