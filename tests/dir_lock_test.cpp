// dir_lock: one holder at a time across processes (fork), the holder named in a refusal, the
// lock gone when the holder dies, a planted link never followed.
#include "io/dir_lock.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <string>

#include "checkpoint_test_util.h"
#include "io/error.h"

using namespace shardquant;
namespace fs = std::filesystem;

namespace {

// Waits for `pid` and returns its exit status (-1 when it did not exit normally).
int wait_exit(pid_t pid) {
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace

TEST_CASE("two processes racing for one folder lock: exactly one gets it") {
  sq_test::temp_dir d("lock");
  for (int round = 0; round < 20; ++round) {
    const std::string name = ".lock-" + std::to_string(round);
    int go[2];
    REQUIRE(::pipe(go) == 0);
    int done[2];
    REQUIRE(::pipe(done) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      char c;
      ::close(go[1]);
      if (::read(go[0], &c, 1) != 1) ::_exit(9);
      auto l = dir_lock::try_lock(d.path, name);
      const char r = l ? 'y' : 'n';
      if (::write(done[1], &r, 1) != 1) ::_exit(9);
      // Hold until the parent has tried too.
      if (::read(go[0], &c, 1) < 0) ::_exit(9);
      ::_exit(l ? 1 : 0);
    }
    ::close(go[0]);
    ::close(done[1]);
    REQUIRE(::write(go[1], "g", 1) == 1);  // both start now
    auto mine = dir_lock::try_lock(d.path, name);
    char theirs = 0;
    REQUIRE(::read(done[0], &theirs, 1) == 1);
    // Both have tried while both held what they got: one 'y' exactly.
    CHECK((mine.has_value() ? 1 : 0) + (theirs == 'y' ? 1 : 0) == 1);
    ::close(go[1]);  // child may exit
    ::close(done[0]);
    CHECK(wait_exit(child) == (theirs == 'y' ? 1 : 0));
  }
}

TEST_CASE("a refused lock names the holder's pid, and the lock goes when the holder is killed") {
  sq_test::temp_dir d("lock");
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    auto l = dir_lock::try_lock(d.path, dir_lock::output_lock_name);
    const char r = l ? 'y' : 'n';
    if (::write(ready[1], &r, 1) != 1) ::_exit(9);
    for (;;) ::pause();  // killed by the parent
  }
  ::close(ready[1]);
  char r = 0;
  REQUIRE(::read(ready[0], &r, 1) == 1);
  ::close(ready[0]);
  REQUIRE(r == 'y');

  std::string holder;
  CHECK_FALSE(dir_lock::try_lock(d.path, dir_lock::output_lock_name, &holder).has_value());
  CHECK(holder.find("pid " + std::to_string(child)) != std::string::npos);
  try {
    (void)dir_lock::lock_or_throw(d.path);
    FAIL("the second lock was granted");
  } catch (const usage_error& e) {
    CHECK(std::string(e.what()).find("pid " + std::to_string(child)) != std::string::npos);
    CHECK(std::string(e.what()).find(d.path.string()) != std::string::npos);
  }

  ::kill(child, SIGKILL);
  CHECK(wait_exit(child) == -1);
  auto l = dir_lock::try_lock(d.path, dir_lock::output_lock_name);
  CHECK(l.has_value());
}

TEST_CASE("locks of different names are independent, and one process cannot take one twice") {
  sq_test::temp_dir d("lock");
  auto whole = dir_lock::try_lock(d.path, ".shardquant-lock");
  auto worker = dir_lock::try_lock(d.path, ".shardquant-lock-worker-3");
  CHECK(whole.has_value());
  CHECK(worker.has_value());
  CHECK_FALSE(dir_lock::try_lock(d.path, ".shardquant-lock-worker-3").has_value());
  worker->release();
  CHECK(dir_lock::try_lock(d.path, ".shardquant-lock-worker-3").has_value());
}

TEST_CASE("release_and_remove leaves no lock file, and the next locker still gets the lock") {
  sq_test::temp_dir d("lock");
  auto l = dir_lock::try_lock(d.path, ".x-lock");
  REQUIRE(l.has_value());
  CHECK(fs::exists(d.path / ".x-lock"));
  l->release_and_remove();
  CHECK_FALSE(fs::exists(d.path / ".x-lock"));
  CHECK(dir_lock::try_lock(d.path, ".x-lock").has_value());
}

TEST_CASE("a lock file that is a planted symbolic link is refused, its target untouched") {
  sq_test::temp_dir d("lock");
  sq_test::write_text(d.path / "target.txt", "precious");
  fs::create_symlink(d.path / "target.txt", d.path / ".shardquant-lock");
  CHECK_THROWS_AS((void)dir_lock::try_lock(d.path, ".shardquant-lock"), io_error);
  CHECK(sq_test::read_text(d.path / "target.txt") == "precious");
}
