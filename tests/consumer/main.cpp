// consumer MODEL_DIR OUTPUT_DIR SCHEME: quantizes through the installed public API only
// (<shardquant/shardquant.h>), prints the report's JSON; a bad scheme must arrive as
// shardquant::usage_error across the library boundary.
#include <shardquant/shardquant.h>

#include <cstdio>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: consumer MODEL_DIR OUTPUT_DIR SCHEME\n";
    return 2;
  }
  try {
    shardquant::quantize_options bad;
    bad.input = argv[1];
    bad.output = argv[2];
    bad.scheme = "no_such_scheme";
    (void)shardquant::quantize_checkpoint(bad);
    std::cerr << "a bad scheme was accepted\n";
    return 1;
  } catch (const shardquant::usage_error& e) {
    std::cerr << "usage_error as expected: " << e.what() << "\n";
  }
  shardquant::quantize_options o;
  o.input = argv[1];
  o.output = argv[2];
  o.scheme = argv[3];
  o.quiet = true;
  try {
    const shardquant::plan_report plan = shardquant::plan_checkpoint(o);
    const shardquant::run_report r = shardquant::quantize_checkpoint(o);
    if (r.jobs != plan.jobs) {
      std::cerr << "plan said " << plan.jobs << " jobs, the run did " << r.jobs << "\n";
      return 1;
    }
    std::cout << "shardquant " << shardquant::version() << ", " << shardquant::schemes().size()
              << " schemes\n"
              << r.to_json();
  } catch (const shardquant::input_error& e) {
    std::cerr << "input error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
