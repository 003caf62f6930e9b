#include "http/request_reader.h"

#include <algorithm>

#include "http/forwarding.h"

namespace poolgate {

namespace {
constexpr size_t kReadSize = 4096;
}  // namespace

RequestReader::RequestReader(BufferPool& buffers, const LimitsConfig& limits, HeaderStore* store)
    : limits_(limits), in_(buffers), parser_(HTTP_REQUEST, *this, limits.max_headers, store) {}

ReadRoom RequestReader::reserve() {
  // A head may hold up to head_limit bytes; whatever the limits, a read asks
  // for no more room than that leaves. While a head is in progress its bytes
  // stay in place (the head's slices are offsets into them).
  const size_t head_limit = std::max(limits_.max_request_line, limits_.max_header_bytes) + size_t{1024};
  const bool mid_head = parser_.midHead();
  const size_t room = !inHead()                ? kReadSize
                      : in_.size() < head_limit ? std::min(kReadSize, head_limit - in_.size())
                                                : 0;
  ReadRoom result;
  if (room == 0 || !in_.ensureWritable(room, 0, !mid_head)) {
    result.refuse = parser_.stage() == HeadStage::kStartLine ? 414 : 431;
    return result;
  }
  result.at = in_.writePtr();
  result.size = in_.writable();
  return result;
}

RequestReader::Event RequestReader::next() {
  if (phase_ == Phase::kFailed) return Event::kError;
  if (phase_ == Phase::kDone) return Event::kNeedMore;
  for (;;) {
    const size_t available = in_.size() - parsed_;
    // (Resumed after an event, llhttp may have steps to take without a byte:
    // the end of a bodyless request.)
    if (available == 0 && !resumed_) return Event::kNeedMore;
    resumed_ = false;
    size_t consumed = 0;
    pending_ = Event::kNeedMore;
    const llhttp_errno_t err = parser_.execute(in_.base(), in_.data() + parsed_, available, &consumed);
    if (err == HPE_PAUSED_UPGRADE) {
      // The upgrade this request asked for was refused (no 101): plain HTTP
      // goes on with the next request.
      parser_.resumeAfterUpgrade();
      in_.consume(parsed_ + consumed);
      parsed_ = 0;
      continue;
    }
    return afterExecute(err, consumed);
  }
}

RequestReader::Event RequestReader::afterExecute(llhttp_errno_t err, size_t consumed) {
  if (err == HPE_OK) {
    if (parser_.midHead()) {
      parsed_ = in_.size();  // kept: the head's slices point into these bytes
      return checkHeadLimits();
    }
    in_.consume(in_.size());
    parsed_ = 0;
    return Event::kNeedMore;
  }
  if (err == HPE_PAUSED && pending_ != Event::kNeedMore) {
    // A callback paused llhttp to hand over one event. The bytes parsed so
    // far are done with (body bytes and head slices stay readable in the
    // storage until the next read).
    in_.consume(parsed_ + consumed);
    parsed_ = 0;
    if (pending_ == Event::kError) {
      phase_ = Phase::kFailed;
      return Event::kError;
    }
    if (pending_ == Event::kComplete) {
      phase_ = Phase::kDone;
    } else if (pending_ == Event::kHead && verdict_ != 0) {
      phase_ = Phase::kFailed;  // refused: next() says so again
      error_status_ = verdict_;
      error_name_ = "request checks";
    } else {
      parser_.resume();
      resumed_ = true;
    }
    return pending_;
  }
  if (parser_.head().header_overflow) return fail(431, "too many headers");
  return fail(400, llhttp_errno_name(err));
}

RequestReader::Event RequestReader::checkHeadLimits() {
  const size_t head_bytes = in_.size();
  if (parser_.stage() == HeadStage::kStartLine && head_bytes > limits_.max_request_line) {
    return fail(414, "request line too long");
  }
  if (head_bytes > limits_.max_header_bytes) return fail(431, "head too large");
  return Event::kNeedMore;
}

RequestReader::Event RequestReader::fail(int status, const char* name) {
  phase_ = Phase::kFailed;
  error_status_ = status;
  error_name_ = name;
  return Event::kError;
}

const char* RequestReader::errorReason() const {
  const char* reason = parser_.errorReason();
  return reason != nullptr ? reason : "";
}

void RequestReader::nextMessage() {
  if (phase_ != Phase::kDone) return;
  phase_ = Phase::kMessage;
  verdict_ = 0;
  target_ = RequestTarget{};
  body_bytes_ = 0;
  in_chunk_ = false;
  parser_.resume();
}

std::string_view RequestReader::host() const {
  return target_.authority.empty() ? findHeader(parser_.head(), in_.base(), "host") : target_.authority;
}

bool RequestReader::headRequest() const { return parser_.method() == HTTP_HEAD; }

bool RequestReader::getOrHead() const { return parser_.method() == HTTP_GET || parser_.method() == HTTP_HEAD; }

bool RequestReader::idempotent() const {
  switch (parser_.method()) {
    case HTTP_GET: case HTTP_HEAD: case HTTP_OPTIONS: case HTTP_PUT: case HTTP_DELETE: case HTTP_TRACE:
      return true;
    default:
      return false;
  }
}

bool RequestReader::bodyPending() const {
  if (phase_ == Phase::kDone) return false;
  return parser_.chunked() || parser_.remainingLength() > 0;
}

void RequestReader::forward(Buffer& sink) const {
  switch (pending_) {
    case Event::kChunkStart:
      appendNumber(sink, chunk_size_, 16);
      sink.append("\r\n");
      return;
    case Event::kBody:
      sink.append(body_);
      return;
    case Event::kChunkEnd:
      sink.append("\r\n");
      return;
    case Event::kComplete:
      if (parser_.chunked()) appendLastChunk(sink, parser_, in_.base());  // with its trailers
      return;
    default:
      return;
  }
}

// ---- llhttp callbacks: each one that makes an event pauses the parser ----

int RequestReader::onHeadersComplete() {
  const size_t head_end = in_.beginOffset() + in_.size();
  verdict_ = checkRequestHead(parser_, in_.base(), head_end, limits_, &target_);
  pending_ = Event::kHead;
  return HPE_PAUSED;
}

int RequestReader::onBody(const char* at, size_t length) {
  if (length == 0) return 0;  // (llhttp restarting its body span at the end of a step)
  body_bytes_ += length;
  // (A chunk was checked whole at its size line; this catches nothing a
  // Content-Length over the limit did not already get at the head.)
  if (limits_.max_body_bytes != 0 && body_bytes_ > limits_.max_body_bytes) {
    body_too_large_ = true;
    error_status_ = 413;
    error_name_ = "body too large";
    pending_ = Event::kError;
    return HPE_PAUSED;
  }
  body_ = std::string_view(at, length);
  pending_ = Event::kBody;
  return HPE_PAUSED;
}

int RequestReader::onChunkHeader(uint64_t size) {
  if (size == 0) return 0;  // the last chunk: kComplete follows
  // The whole chunk is weighed at its size line, before that line goes
  // anywhere: nothing past max_body_bytes is forwarded, nor promised
  // (body_bytes_ never exceeds the limit, so no underflow).
  const uint64_t limit = limits_.max_body_bytes;
  if (limit != 0 && size > limit - body_bytes_) {
    body_too_large_ = true;
    error_status_ = 413;
    error_name_ = "body too large";
    pending_ = Event::kError;
    return HPE_PAUSED;
  }
  chunk_size_ = size;
  in_chunk_ = true;
  pending_ = Event::kChunkStart;
  return HPE_PAUSED;
}

int RequestReader::onChunkComplete() {
  // Called after each chunk's data, and after the last (empty) chunk too.
  if (!in_chunk_) return 0;
  in_chunk_ = false;
  pending_ = Event::kChunkEnd;
  return HPE_PAUSED;
}

int RequestReader::onMessageComplete() {
  pending_ = Event::kComplete;
  return HPE_PAUSED;
}

}  // namespace poolgate
