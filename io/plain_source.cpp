// Plain shards as a tensor source: async_io reads into the token, pread for probes.
#include "io/plain_source.h"

#include <span>
#include <utility>

#include "io/file.h"

namespace shardquant {

namespace {

class plain_source final : public tensor_source {
 public:
  explicit plain_source(std::shared_ptr<io_file> f) : file_(std::move(f)) {}
  const std::string& path() const noexcept override { return file_->path(); }
  std::string_view kind() const noexcept override { return "plain"; }
  // The engine reads aligned_read_extent(offset, length) to the area's start, which puts the
  // first wanted byte at read_skip(offset).
  void read(async_io& io, uint64_t offset, uint64_t length, std::byte* area, bool,
            const std::string&, io_callback done) override {
    io.read(file_, offset, length, area, std::move(done));
  }
  void read_now(uint64_t offset, uint64_t length, std::byte* dest, const std::string&) override {
    pread_all(file_->buffered_fd(), std::span<std::byte>(dest, length), offset, file_->path());
  }
  bool direct() const noexcept override { return file_->direct(); }

 private:
  std::shared_ptr<io_file> file_;
};

}  // namespace

std::shared_ptr<tensor_source> open_plain_source(const std::filesystem::path& file,
                                                 const source_open_options& o) {
  return std::make_shared<plain_source>(io_file::open(file, io_file::mode::read, o.direct));
}

}  // namespace shardquant
