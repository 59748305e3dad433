// Placeholder: registers nothing yet (being written).
#include "commands.hpp"
namespace mlalora::cli {
Action add_golden(CLI::App&, Context&) { return nullptr; }
}  // namespace mlalora::cli
