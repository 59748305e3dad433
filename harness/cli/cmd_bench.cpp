#include "commands.hpp"
namespace mlalora::cli {
Action add_bench(CLI::App&, Context&) { return nullptr; }
}  // namespace mlalora::cli
