// The `shardquant` program: the one catch that turns errors into a message and an exit code
// (design.md §5). Everything else lives in cli/cli.cpp.
#include <exception>
#include <iostream>

#include "cli/cli.h"
#include "io/error.h"

int main(int argc, char** argv) {
  using namespace shardquant;
  try {
    return run_cli(argc, argv, std::cout, std::cerr);
  } catch (const usage_error& e) {
    std::cerr << "shardquant: " << e.what() << "\n";
    return k_exit_usage;
  } catch (const std::exception& e) {  // input_error, io_error, anything else
    std::cerr << "shardquant: error: " << e.what() << "\n";
    return k_exit_input;
  }
}
