// The mlalora CLI: one function per subcommand registers its options on the
// CLI11 app and returns the action to run. Exit codes: 0 ok, 1 the check
// failed (incorrect/failed rows, gate violations), 2 usage / bad input,
// 3 I/O or device error.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace mlalora::cli {

using Action = std::function<int()>;

struct Context {
  std::string command_line;
};

Action add_verify(CLI::App& app, Context& ctx);
Action add_fma(CLI::App& app, Context& ctx);
Action add_bench(CLI::App& app, Context& ctx);
Action add_gate(CLI::App& app, Context& ctx);
Action add_premerge(CLI::App& app, Context& ctx);
Action add_golden(CLI::App& app, Context& ctx);
Action add_check(CLI::App& app, Context& ctx);
Action add_export(CLI::App& app, Context& ctx);

int fail(int code, const std::string& message);  // prints "mlalora: error: ..." and returns code

}  // namespace mlalora::cli
