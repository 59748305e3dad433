#include "mlalora/build_info.hpp"
#include <cstdio>
#include <map>

#include "commands.hpp"

namespace mlalora::cli {
int fail(int code, const std::string& message) {
  std::fprintf(stderr, "mlalora: error: %s\n", message.c_str());
  return code;
}
}  // namespace mlalora::cli

int main(int argc, char** argv) {
  using namespace mlalora::cli;
  CLI::App app{"mlalora: verify and benchmark absorbed-MLA kv_b_proj LoRA (SGMM) kernels against a float64 reference"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string(MLALORA_VERSION) + " (" + MLALORA_GIT_COMMIT + ")");
  Context ctx;
  for (int i = 0; i < argc; ++i) ctx.command_line += (i ? " " : "") + std::string(argv[i]);
  std::map<std::string, Action> actions;
  auto add = [&](const char* name, Action a) { actions[name] = std::move(a); };
  add("verify", add_verify(app, ctx));
  add("fma", add_fma(app, ctx));
  add("bench", add_bench(app, ctx));
  add("gate", add_gate(app, ctx));
  add("premerge", add_premerge(app, ctx));
  add("golden", add_golden(app, ctx));
  add("check", add_check(app, ctx));
  add("export", add_export(app, ctx));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  for (auto* sub : app.get_subcommands())
    if (auto it = actions.find(sub->get_name()); it != actions.end() && it->second) return it->second();
  return fail(2, "no subcommand given (see --help)");
}
