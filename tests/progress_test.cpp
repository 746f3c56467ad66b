// The terminal progress bar (pipeline/run/progress.h): it never reaches the terminal's last
// column at any width, so "\r" redraws never leave wrapped half-lines; sizes in binary units.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "pipeline/run/progress.h"

using namespace shardquant;

namespace {
progress_sample big_sample() {
  progress_sample s;
  s.bytes_done = 1234567890123ull;   // 1.1 TiB
  s.bytes_total = 9876543210987ull;  // 9.0 TiB
  s.shards_done = 1234;
  s.shards_total = 16384;
  s.seconds = 3.5;
  return s;
}
}  // namespace

TEST_CASE("the progress bar never reaches the last column, at 80, 40 and narrower widths") {
  const progress_sample s = big_sample();
  for (int cols : {200, 120, 80, 60, 40, 30, 20, 12, 5, 2, 1}) {
    for (bool fin : {false, true}) {
      const std::string t = progress_bar_text(s, cols, fin);
      CAPTURE(cols);
      CAPTURE(t);
      CHECK(int(t.size()) <= cols - 1);
      CHECK(t.find('\n') == std::string::npos);
      CHECK(t.find('\r') == std::string::npos);
    }
  }
}

TEST_CASE("the progress bar keeps the percentage and ETA at 40 columns and everything at 120") {
  const progress_sample s = big_sample();
  const std::string narrow = progress_bar_text(s, 40, false);
  CHECK(narrow.find("12.5%") != std::string::npos);
  CHECK(narrow.find("ETA") != std::string::npos);
  CHECK(narrow.front() == '[');  // a bar still fits
  const std::string wide = progress_bar_text(s, 120, false);
  CHECK(wide.find("1.1 TiB / 9.0 TiB") != std::string::npos);
  CHECK(wide.find("GB/s") != std::string::npos);  // rates: 10^9 bytes/s, as gb_per_s
  CHECK(wide.find("shards 1234/16384") != std::string::npos);
  CHECK(wide.substr(0, 6) == "[#### ");  // 12.5% of 30 cells: 4 filled
}

TEST_CASE("sizes are printed in binary units") {
  CHECK(human_bytes(512) == "512 B");
  CHECK(human_bytes(1536) == "1.5 KiB");
  CHECK(human_bytes(double(uint64_t{3} << 30)) == "3.0 GiB");
  CHECK(human_bytes(1e9) == "953.7 MiB");  // not "1.0 GB"
}

TEST_CASE("the terminal width falls back to COLUMNS, then to 80, when the fd is no terminal") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const char* old = std::getenv("COLUMNS");
  const std::string saved = old ? old : "";
  ::setenv("COLUMNS", "37", 1);
  CHECK(terminal_columns(fds[1]) == 37);
  ::setenv("COLUMNS", "wide", 1);
  CHECK(terminal_columns(fds[1]) == 80);
  ::unsetenv("COLUMNS");
  CHECK(terminal_columns(fds[1]) == 80);
  if (old) ::setenv("COLUMNS", saved.c_str(), 1);
  ::close(fds[0]);
  ::close(fds[1]);
}
