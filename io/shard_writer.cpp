// shard_writer: header, tensor writes with byte accounting, publish.
#include "io/shard_writer.h"

#include <stdexcept>

#include "io/checksum.h"

namespace shardquant {

shard_writer::shard_writer(shard_layout layout, std::filesystem::path final_path,
                           std::optional<zstd_compress_options> compress)
    : layout_(std::move(layout)),
      file_(std::move(final_path)),
      progress_(layout_.tensors().size()),
      compress_(compress) {
  file_.pwrite(0, layout_.header_bytes());
  const std::string& h = layout_.header_bytes();
  add_checksum(0, std::as_bytes(std::span<const char>(h.data(), h.size())));
}

void shard_writer::add_checksum(uint64_t offset, std::span<const std::byte> bytes) noexcept {
  checksum_.fetch_add(checksum_piece(offset, bytes), std::memory_order_relaxed);
}

uint64_t shard_writer::record(std::string_view name, uint64_t offset, uint64_t size) {
  const tensor_entry* e = layout_.find(name);
  if (!e)
    throw std::logic_error(file_.final_path().string() + ": tensor '" + std::string(name) +
                           "' is not in this shard's layout");
  const uint64_t tensor_size = e->byte_size();
  if (offset > tensor_size || size > tensor_size - offset)
    throw std::logic_error(file_.final_path().string() + ": write of " + std::to_string(size) +
                           " bytes at offset " + std::to_string(offset) + " leaves tensor '" +
                           std::string(name) + "' (" + std::to_string(tensor_size) + " bytes)");
  if (size > 0) {
    std::lock_guard lock(mutex_);
    auto& p = progress_[static_cast<size_t>(e - layout_.tensors().data())];
    const uint64_t end = offset + size;
    auto next = p.ranges.lower_bound(offset);
    const bool overlaps_next = next != p.ranges.end() && next->first < end;
    const bool overlaps_prev = next != p.ranges.begin() && std::prev(next)->second > offset;
    if (overlaps_next || overlaps_prev)
      throw std::logic_error(file_.final_path().string() + ": bytes [" + std::to_string(offset) +
                             ", " + std::to_string(end) + ") of tensor '" + std::string(name) +
                             "' were already written");
    p.ranges.emplace(offset, end);
    p.written += size;
  }
  return layout_.data_start() + e->begin + offset;
}

void shard_writer::write_tensor(std::string_view name, std::span<const std::byte> bytes) {
  const tensor_entry* e = layout_.find(name);
  if (e && bytes.size() != e->byte_size())
    throw std::logic_error(file_.final_path().string() + ": tensor '" + std::string(name) +
                           "' is " + std::to_string(e->byte_size()) + " bytes, got " +
                           std::to_string(bytes.size()));
  write_at(name, 0, bytes);
}

void shard_writer::write_at(std::string_view name, uint64_t offset,
                            std::span<const std::byte> bytes) {
  const uint64_t at = record(name, offset, bytes.size());
  file_.pwrite(at, bytes);
  add_checksum(at, bytes);
}

void shard_writer::note_written(std::string_view name, uint64_t offset, uint64_t size) {
  (void)record(name, offset, size);
}

uint64_t shard_writer::written_bytes(std::string_view name) const {
  const tensor_entry* e = layout_.find(name);
  if (!e) return 0;
  std::lock_guard lock(mutex_);
  return progress_[static_cast<size_t>(e - layout_.tensors().data())].written;
}

void shard_writer::commit() {
  {
    std::lock_guard lock(mutex_);
    const auto& tensors = layout_.tensors();
    for (size_t i = 0; i < tensors.size(); ++i)
      if (progress_[i].written != tensors[i].byte_size())
        throw std::logic_error(file_.final_path().string() + ": tensor '" + tensors[i].name +
                               "' is incomplete at commit (" +
                               std::to_string(progress_[i].written) + " of " +
                               std::to_string(tensors[i].byte_size()) + " bytes written)");
  }
  if (!compress_) {
    file_.commit(layout_.file_size());
    published_path_ = file_.final_path();
    published_size_ = layout_.file_size();
    return;
  }
  // The header and every tensor start a frame, so a reader with the seek table finds a tensor
  // without decompressing what precedes it. The plain temporary file is removed with file_.
  std::vector<uint64_t> cuts{layout_.data_start()};
  for (const auto& t : layout_.tensors()) cuts.push_back(layout_.data_start() + t.begin);
  published_path_ = file_.final_path().string() + ".zst";
  published_size_ = write_zstd_seekable(file_.fd(), file_.temp_path().string(), layout_.file_size(),
                                        std::move(cuts), published_path_, *compress_);
}

}  // namespace shardquant
