// Spool: an ordered queue of bytes kept for a slow reader, in pooled memory
// blocks first and then in an unlinked temporary file.
//
// Response buffering uses it: what the upstream sends faster than the client
// reads is kept here, so the upstream connection (and, behind it, a prefork
// app worker) is free as soon as the response is complete. Memory blocks come
// from the worker's BufferPool; a worker-wide budget caps what all spools of
// the worker hold in memory together. Past a spool's memory share, bytes go
// to a file opened with O_TMPFILE (never linked into the directory, so
// nothing is left behind whatever happens, a crash included) up to its own
// cap. The caps are where the caller stops reading (full()): append() still
// takes what the reads already in hand bring, so nothing is ever refused for
// room, only for a failed write. Order is kept: memory holds only bytes older
// than any in the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "core/buffer.h"
#include "core/fd.h"

namespace poolgate {

struct SpoolLimits {
  size_t memory = 0;         // per spool, in memory
  uint64_t file = 0;         // per spool, on disk (0 = never spill)
  std::string directory;     // for the temporary files
};

// What all spools of one worker hold in memory, against a cap.
struct SpoolBudget {
  size_t cap = 0;
  size_t in_use = 0;
};

class Spool {
 public:
  Spool(BufferPool& pool, SpoolBudget& budget, const SpoolLimits& limits)
      : pool_(pool), budget_(budget), limits_(limits) {}
  ~Spool() { clear(); }
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends all of it: to memory while the file is empty and the spool's
  // memory share and the worker's budget allow, else to the file (or, with
  // no file allowed, to memory past the share). false: the file could not be
  // written (errno says why: ENOSPC, EDQUOT, EIO...).
  bool append(const char* data, size_t n);
  // At its caps: the caller should stop reading until drainInto() makes room.
  bool full() const;
  bool append(std::string_view text) { return append(text.data(), text.size()); }

  // Moves up to `max` bytes from the front into `out`. Returns how many; 0
  // with !empty() means a read error (errno).
  size_t drainInto(Buffer& out, size_t max);

  bool empty() const { return size() == 0; }
  uint64_t size() const { return memory_bytes_ + (file_written_ - file_read_); }
  size_t memoryBytes() const { return memory_bytes_; }
  uint64_t fileBytes() const { return file_written_ - file_read_; }
  bool usedFile() const { return used_file_; }
  uint64_t peak() const { return peak_; }  // the most it held at once
  uint64_t appended() const { return appended_; }  // bytes that went through it

  // Frees the blocks and closes the file.
  void clear();

 private:
  struct Block {
    char* data;
    size_t begin;
    size_t end;
  };
  bool appendToMemory(const char* data, size_t n, bool within_caps);
  bool appendToFile(const char* data, size_t n);
  // Bytes past the memory share go to the file (else to memory, past it).
  bool fileInUse() const { return limits_.file > 0; }

  BufferPool& pool_;
  SpoolBudget& budget_;
  const SpoolLimits& limits_;
  std::deque<Block> blocks_;
  size_t memory_bytes_ = 0;
  Fd file_;
  uint64_t file_written_ = 0;  // offsets into the file
  uint64_t file_read_ = 0;
  uint64_t peak_ = 0;
  uint64_t appended_ = 0;
  bool used_file_ = false;
};

}  // namespace poolgate
