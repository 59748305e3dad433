#include "commands.hpp"
namespace mlalora::cli {
Action add_gate(CLI::App&, Context&) { return nullptr; }
}  // namespace mlalora::cli
