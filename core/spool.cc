#include "core/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace poolgate {

namespace {

// An unlinked temporary file in `directory`: O_TMPFILE where the file system
// has it, else a named file removed at once.
Fd openTemporary(const std::string& directory) {
  int fd = ::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return Fd(fd);
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) return Fd();
  std::string path = directory + "/poolgate-spool-XXXXXX";
  fd = ::mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) return Fd();
  ::unlink(path.c_str());
  return Fd(fd);
}

}  // namespace

bool Spool::append(const char* data, size_t n) {
  if (n == 0) return true;
  // Memory only while the file holds nothing: its bytes are newer.
  bool ok = fileBytes() == 0 && appendToMemory(data, n, /*within_caps=*/true);
  if (!ok) ok = fileInUse() ? appendToFile(data, n) : appendToMemory(data, n, /*within_caps=*/false);
  if (ok) {
    appended_ += n;
    peak_ = std::max(peak_, size());
  }
  return ok;
}

bool Spool::full() const {
  if (fileInUse()) return fileBytes() >= limits_.file;
  return memory_bytes_ >= limits_.memory || budget_.in_use >= budget_.cap;
}

bool Spool::appendToMemory(const char* data, size_t n, bool within_caps) {
  const size_t block = pool_.blockSize();
  // Room in the last block, and new blocks within both caps.
  size_t room = blocks_.empty() ? 0 : block - blocks_.back().end;
  if (within_caps && n > room) {
    const size_t blocks_needed = (n - room + block - 1) / block;
    const size_t more = blocks_needed * block;
    if (memory_bytes_ + n > limits_.memory || budget_.in_use + more > budget_.cap) return false;
  }
  while (n > 0) {
    if (blocks_.empty() || blocks_.back().end == block) {
      blocks_.push_back({pool_.acquire(), 0, 0});
      budget_.in_use += block;
    }
    Block& last = blocks_.back();
    const size_t take = std::min(n, block - last.end);
    std::memcpy(last.data + last.end, data, take);
    last.end += take;
    memory_bytes_ += take;
    data += take;
    n -= take;
  }
  return true;
}

bool Spool::appendToFile(const char* data, size_t n) {
  if (!file_) {
    file_ = openTemporary(limits_.directory);
    if (!file_) return false;
    used_file_ = true;
  }
  // Page-cache writes: fast, and bounded by the caller's read size. nginx
  // writes its proxy temp files from the event loop the same way.
  size_t done = 0;
  while (done < n) {
    const ssize_t w = ::pwrite(file_.get(), data + done, n - done, static_cast<off_t>(file_written_ + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return false;  // what was written past file_written_ is ignored: not counted
    }
    done += static_cast<size_t>(w);
  }
  file_written_ += n;
  return true;
}

size_t Spool::drainInto(Buffer& out, size_t max) {
  size_t moved = 0;
  while (moved < max && !blocks_.empty()) {
    Block& first = blocks_.front();
    const size_t take = std::min(max - moved, first.end - first.begin);
    out.append(first.data + first.begin, take);
    first.begin += take;
    memory_bytes_ -= take;
    moved += take;
    if (first.begin == first.end) {
      pool_.release(first.data);
      budget_.in_use -= pool_.blockSize();
      blocks_.pop_front();
    }
  }
  if (moved < max && fileBytes() > 0) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(max - moved, fileBytes()));
    if (!out.ensureWritable(want)) return moved;
    const ssize_t r = ::pread(file_.get(), out.writePtr(), want, static_cast<off_t>(file_read_));
    if (r > 0) {
      out.commit(static_cast<size_t>(r));
      file_read_ += static_cast<uint64_t>(r);
      moved += static_cast<size_t>(r);
    } else if (r == 0) {
      errno = EIO;  // shorter than what we wrote
    }
    if (fileBytes() == 0) {  // drained: the next bytes may start again at 0
      file_written_ = file_read_ = 0;
      if (::ftruncate(file_.get(), 0) != 0) file_.reset();
    }
  }
  return moved;
}

void Spool::clear() {
  for (Block& block : blocks_) {
    pool_.release(block.data);
    budget_.in_use -= pool_.blockSize();
  }
  blocks_.clear();
  memory_bytes_ = 0;
  file_.reset();
  file_written_ = file_read_ = 0;
}

}  // namespace poolgate
