#include "http/response_reader.h"

namespace poolgate {

namespace {
constexpr size_t kReadSize = 4096;
}  // namespace

ResponseReader::ResponseReader(BufferPool& buffers, HeaderStore* store)
    : in_(buffers), parser_(HTTP_RESPONSE, *this, kMaxHeaders, store) {}

void ResponseReader::begin(bool head_request) {
  parser_.reset();
  parser_.setNoBodyExpected(head_request);
  parsed_ = 0;
  pending_ = Event::kNeedMore;
  head_waits_ = resumed_ = close_delimited_ = tunnel_ = complete_ = failed_ = false;
  error_ = Error::kNone;
  error_name_ = "";
  body_ = {};
}

ReadRoom ResponseReader::reserve() {
  ReadRoom room;
  // While a head is read its bytes stay in place (its slices point into
  // them), and the whole buffer may not pass kMaxHead.
  if (!in_.ensureWritable(kReadSize, kMaxHead, !parser_.midHead())) {
    fail(Error::kHeadTooLarge, "response head too large");
    return room;
  }
  room.at = in_.writePtr();
  room.size = in_.writable();
  return room;
}

ResponseReader::Event ResponseReader::next() {
  if (failed_) return Event::kError;
  if (tunnel_) return tunnelBytes();
  if (complete_) return Event::kNeedMore;
  if (head_waits_) {
    // A bodyless head went out before its message's end, which llhttp
    // reached in the same step: that end now.
    head_waits_ = false;
    const Event event = messageEnded();
    if (event != Event::kNeedMore || failed_) return event;
  }
  for (;;) {
    const size_t available = in_.size() - parsed_;
    // (Resumed after an event, llhttp may have steps to take without a byte:
    // the end of a body that ended with the event's bytes.)
    if (available == 0 && !resumed_) return Event::kNeedMore;
    resumed_ = false;
    size_t consumed = 0;
    pending_ = Event::kNeedMore;
    const llhttp_errno_t err = parser_.execute(in_.base(), in_.data() + parsed_, available, &consumed);
    const Event event = afterExecute(err, consumed);
    if (event != Event::kNeedMore || failed_ || (in_.size() == parsed_ && !resumed_)) return event;
    // An interim response ended: the final one follows in the same bytes.
  }
}

ResponseReader::Event ResponseReader::afterExecute(llhttp_errno_t err, size_t consumed) {
  if (err == HPE_OK) {
    if (parser_.midHead()) {
      parsed_ = in_.size();  // kept: the head's slices point into these bytes
    } else {
      in_.consume(in_.size());
      parsed_ = 0;
    }
    return Event::kNeedMore;
  }
  if (err != HPE_PAUSED) {
    return error_ == Error::kMalformedHead ? fail(Error::kMalformedHead, "malformed response head")
                                           : fail(Error::kParse, llhttp_errno_name(err));
  }
  in_.consume(parsed_ + consumed);
  parsed_ = 0;
  if (pending_ == Event::kHead && head_waits_) return Event::kHead;  // its end follows at the next call
  if (pending_ != Event::kComplete) {
    parser_.resume();
    resumed_ = true;
    return pending_;
  }
  return messageEnded();
}

ResponseReader::Event ResponseReader::messageEnded() {
  pending_ = Event::kNeedMore;
  if (status() == 101) {  // accepted (the owner read on): bytes flow raw from now on
    tunnel_ = true;
    return tunnelBytes();
  }
  if (interim()) {  // the final response follows
    parser_.resume();
    resumed_ = true;
    return Event::kNeedMore;
  }
  complete_ = true;  // anything left in the buffer is unsolicited
  return Event::kComplete;
}

ResponseReader::Event ResponseReader::tunnelBytes() {
  if (in_.empty()) return Event::kNeedMore;
  body_ = std::string_view(in_.data(), in_.size());
  in_.consume(in_.size());  // the bytes stay readable until the next read
  return Event::kBody;
}

ResponseReader::Event ResponseReader::finish() {
  if (failed_) return Event::kError;
  if (tunnel_) return Event::kComplete;  // the upstream ended the tunnel
  if (!complete_ && parser_.stage() == HeadStage::kBody && parser_.needsEof()) {
    close_delimited_ = true;
    pending_ = Event::kNeedMore;
    const llhttp_errno_t err = parser_.finish();
    if ((err == HPE_OK || err == HPE_PAUSED) && pending_ == Event::kComplete) {
      complete_ = true;
      return Event::kComplete;
    }
  }
  return fail(Error::kTruncated, "truncated");
}

ResponseReader::Event ResponseReader::fail(Error error, const char* name) {
  failed_ = true;
  error_ = error;
  error_name_ = name;
  return Event::kError;
}

const char* ResponseReader::errorReason() const {
  const char* reason = parser_.errorReason();
  return reason != nullptr ? reason : "";
}

// ---- llhttp callbacks --------------------------------------------------

int ResponseReader::onHeadersComplete() {
  if (!acceptableResponseHead(parser_, in_.base())) {
    error_ = Error::kMalformedHead;
    return -1;  // a parse error: the response cannot be used
  }
  const int code = status();
  if (code >= 200 || code == 101) close_delimited_ = parser_.needsEof();
  pending_ = Event::kHead;
  // A head without a body ends at once: llhttp must be told so here (a
  // pause would make it read a body), so the head waits for that end.
  if (parser_.bodyless()) {
    head_waits_ = true;
    return 0;
  }
  return HPE_PAUSED;
}

int ResponseReader::onBody(const char* at, size_t length) {
  if (length == 0) return 0;  // (llhttp restarting its body span at the end of a step)
  body_ = std::string_view(at, length);
  pending_ = Event::kBody;
  return HPE_PAUSED;
}

int ResponseReader::onMessageComplete() {
  if (head_waits_) return HPE_PAUSED;  // pending_ stays kHead; next() completes it
  pending_ = Event::kComplete;
  return HPE_PAUSED;
}

}  // namespace poolgate
