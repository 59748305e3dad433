// mlalora export: execute the report notebooks (notebooks_export/*.ipynb)
// headless and write self-contained HTML, by running
//   python3 <source>/notebooks_export/export.py [--error R] [--throughput T] [--fma F] --out DIR
// The child is started with posix_spawnp and an argument vector (no shell, so
// paths need no quoting). Exit codes: 0 ok, 2 usage / bad input (also what
// export.py returns for a missing, unreadable or wrong-kind report), 3 any
// other failure (a notebook failed, python3 missing, killed by a signal).
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"

extern char** environ;

namespace mlalora::cli {

namespace {

struct ExportOptions {
  std::string error, throughput, fma, out;
  int timeout_s = 600;
  std::string python;  // empty: $MLALORA_PYTHON, else python3 on PATH
  std::string script = std::string(MLALORA_SOURCE_DIR) + "/notebooks_export/export.py";
};

std::string shell_quote(const std::string& s) {  // for the echoed command line only
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

int run_export(const ExportOptions& o) {
  if (o.error.empty() && o.throughput.empty() && o.fma.empty())
    return fail(2, "export: give at least one of --error, --throughput, --fma");
  if (o.timeout_s <= 0) return fail(2, "--timeout must be positive");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(o.script, ec))
    return fail(3, "export: notebook exporter not found at " + o.script +
                       " (it is run from the source tree this binary was built from; use --script)");
  std::string python = o.python;
  if (python.empty()) {
    const char* env = std::getenv("MLALORA_PYTHON");
    python = env && *env ? env : "python3";
  }
  std::vector<std::string> args{python, o.script};
  auto opt = [&](const char* name, const std::string& v) {
    if (!v.empty()) args.push_back(name), args.push_back(v);
  };
  opt("--error", o.error), opt("--throughput", o.throughput), opt("--fma", o.fma);
  opt("--out", o.out), opt("--timeout", std::to_string(o.timeout_s));

  std::string shown;
  for (const auto& a : args) shown += (shown.empty() ? "" : " ") + shell_quote(a);
  std::printf("running: %s\n", shown.c_str());
  std::fflush(stdout);
  std::fflush(stderr);

  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, python.c_str(), nullptr, nullptr, argv.data(), environ);
  if (rc != 0)
    return fail(3, "export: cannot start '" + python + "': " + std::strerror(rc) +
                       " (install Python 3 with scripts/setup.sh, or set MLALORA_PYTHON / --python)");
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return fail(3, std::string("export: waitpid: ") + std::strerror(errno));
  }
  if (WIFSIGNALED(status))
    return fail(3, "export: " + python + " was killed by signal " + std::to_string(WTERMSIG(status)));
  if (!WIFEXITED(status)) return fail(3, "export: " + python + " ended abnormally");
  int code = WEXITSTATUS(status);
  if (code == 0) return 0;
  if (code == 2) return fail(2, "export: bad input (see the message above)");
  if (code == 127) return fail(3, "export: '" + python + "' could not run the exporter");
  return fail(3, "export: the notebook export failed (exit status " + std::to_string(code) + ")");
}

}  // namespace

Action add_export(CLI::App& app, Context&) {
  auto o = std::make_shared<ExportOptions>();
  CLI::App* sub = app.add_subcommand(
      "export", "Execute the report notebooks headless and write self-contained HTML (errors.html, "
                "throughput.html, fma.html) for the reports given; needs python3 with h5py, matplotlib, "
                "nbclient, nbconvert, ipykernel (scripts/setup.sh)");
  sub->add_option("--error", o->error, "Error report (mlalora verify) -> errors.html")->check(CLI::ExistingFile);
  sub->add_option("--throughput", o->throughput,
                  "Throughput report (mlalora bench) -> throughput.html; also compared in fma.html")
      ->check(CLI::ExistingFile);
  sub->add_option("--fma", o->fma, "FMA report (mlalora fma) -> fma.html")->check(CLI::ExistingFile);
  sub->add_option("--out", o->out, "Output folder (created if missing)")->required();
  sub->add_option("--timeout", o->timeout_s, "Per-cell execution timeout in seconds")->capture_default_str();
  sub->add_option("--python", o->python, "Python interpreter (default: $MLALORA_PYTHON, else python3)");
  sub->add_option("--script", o->script, "The exporter script")->capture_default_str();
  return [o] { return run_export(*o); };
}

}  // namespace mlalora::cli
