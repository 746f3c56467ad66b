// shardquant command line (placeholder until the CLI lands).
#include <cstdio>
int main() {
  std::puts("shardquant " SHARDQUANT_VERSION);
  return 0;
}
