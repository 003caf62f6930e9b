// RequestReader and ResponseReader (http/): bytes in, events out, whatever
// the read split.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "http/request_reader.h"
#include "http/response_reader.h"

namespace poolgate {
namespace {

using ReqEvent = RequestReader::Event;
using RespEvent = ResponseReader::Event;

// Read sizes: 0 = everything the reader has room for.
using Split = std::function<size_t()>;
Split whole() { return [] { return size_t{0}; }; }
Split byteByByte() { return [] { return size_t{1}; }; }
Split randomSplit(unsigned seed) {
  auto rng = std::make_shared<std::mt19937>(seed);
  return [rng] { return size_t{1} + (*rng)() % 17; };
}

// What the reader said, body pieces merged, and what it would forward.
struct Transcript {
  std::vector<std::string> events;
  std::string forwarded;
  std::string unread;  // after the last event

  void add(const std::string& event) { events.push_back(event); }
  void addBody(std::string_view piece) {
    if (!events.empty() && events.back().rfind("body:", 0) == 0) {
      events.back().append(piece);
    } else {
      events.push_back("body:" + std::string(piece));
    }
  }
};

std::string requestHead(const RequestReader& r) {
  const HttpHead& head = r.head();
  std::string text = "head " + std::string(head.method.view(r.base())) + " " +
                     std::string(head.target.view(r.base()));
  if (r.verdict() != 0) text += " verdict " + std::to_string(r.verdict());
  return text;
}

// Reads `bytes` as a client would send them, taking every pipelined request
// in turn; stops at an error.
Transcript readRequests(std::string_view bytes, const Split& split, const LimitsConfig& limits = {}) {
  BufferPool pool;
  RequestReader reader(pool, limits);
  Buffer sink(pool);
  Transcript t;
  size_t offset = 0;
  for (;;) {
    for (bool more = true; more;) {
      const ReqEvent event = reader.next();
      switch (event) {
        case ReqEvent::kNeedMore: more = false; break;
        case ReqEvent::kHead:
          t.add(requestHead(reader));
          if (reader.verdict() != 0) {
            t.unread.assign(reader.unread());
            t.forwarded.assign(sink.data(), sink.size());
            return t;
          }
          break;
        case ReqEvent::kChunkStart: t.add("chunk " + std::to_string(reader.chunkSize())); break;
        case ReqEvent::kBody: t.addBody(reader.body()); break;
        case ReqEvent::kChunkEnd: t.add("chunk end"); break;
        case ReqEvent::kComplete:
          t.add("complete");
          reader.forward(sink);
          t.unread.assign(reader.unread());
          reader.nextMessage();
          continue;
        case ReqEvent::kError:
          t.add("error " + std::to_string(reader.errorStatus()) + (reader.bodyTooLarge() ? " body" : ""));
          t.forwarded.assign(sink.data(), sink.size());
          return t;
      }
      if (event != ReqEvent::kNeedMore) reader.forward(sink);
    }
    if (offset == bytes.size()) break;
    const ReadRoom room = reader.reserve();
    if (room.size == 0) {
      t.add("refuse " + std::to_string(room.refuse));
      break;
    }
    size_t n = std::min(room.size, bytes.size() - offset);
    if (size_t want = split(); want != 0) n = std::min(n, want);
    std::memcpy(room.at, bytes.data() + offset, n);
    reader.commit(n);
    offset += n;
  }
  t.forwarded.assign(sink.data(), sink.size());
  return t;
}

// Reads `bytes` as the response to one request, then the upstream's EOF if
// `eof`. Tunnel bytes (after a 101) show as body.
Transcript readResponse(std::string_view bytes, const Split& split, bool head_request = false, bool eof = false) {
  BufferPool pool;
  ResponseReader reader(pool);
  reader.begin(head_request);
  Transcript t;
  size_t offset = 0;
  auto onEvent = [&](RespEvent event) {
    switch (event) {
      case RespEvent::kNeedMore: return false;
      case RespEvent::kHead: t.add("head " + std::to_string(reader.status())); return true;
      case RespEvent::kBody: t.addBody(reader.body()); return true;
      case RespEvent::kComplete:
        for (const HeaderSlice& h : reader.parser().trailers()) {
          t.add("trailer " + std::string(h.name.view(reader.base())) + ": " + std::string(h.value.view(reader.base())));
        }
        t.add(reader.hasUnread() ? "complete, unread bytes" : "complete");
        return false;
      case RespEvent::kError: t.add("error " + std::to_string(static_cast<int>(reader.error()))); return false;
    }
    return false;
  };
  for (;;) {
    while (onEvent(reader.next())) {
    }
    if (reader.complete() || reader.error() != ResponseReader::Error::kNone) return t;
    if (offset == bytes.size()) break;
    const ReadRoom room = reader.reserve();
    if (room.size == 0) {
      onEvent(RespEvent::kError);
      return t;
    }
    size_t n = std::min(room.size, bytes.size() - offset);
    if (size_t want = split(); want != 0) n = std::min(n, want);
    std::memcpy(room.at, bytes.data() + offset, n);
    reader.commit(n);
    offset += n;
  }
  if (eof) onEvent(reader.finish());
  return t;
}

using Events = std::vector<std::string>;

// Every split gives what one read gives.
void expectSplitIndependent(std::string_view bytes, const LimitsConfig& limits = {}) {
  const Transcript one = readRequests(bytes, whole(), limits);
  const Transcript bytewise = readRequests(bytes, byteByByte(), limits);
  EXPECT_EQ(bytewise.events, one.events);
  EXPECT_EQ(bytewise.forwarded, one.forwarded);
  for (unsigned seed = 1; seed <= 20; ++seed) {
    const Transcript split = readRequests(bytes, randomSplit(seed), limits);
    EXPECT_EQ(split.events, one.events) << "seed " << seed;
    EXPECT_EQ(split.forwarded, one.forwarded) << "seed " << seed;
  }
}

// ---- Requests -----------------------------------------------------------

TEST(RequestReader, BodylessRequestIsAHeadThenItsEnd) {
  const Transcript t = readRequests("GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n", whole());
  EXPECT_EQ(t.events, (Events{"head GET /a?b", "complete"}));
  EXPECT_EQ(t.forwarded, "");
}

TEST(RequestReader, HeadCarriesTheFactsTheProxyNeeds) {
  BufferPool pool;
  LimitsConfig limits;
  RequestReader reader(pool, limits);
  const std::string bytes = "HEAD http://h/p?q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
  ReadRoom room = reader.reserve();
  ASSERT_GE(room.size, bytes.size());
  std::memcpy(room.at, bytes.data(), bytes.size());
  reader.commit(bytes.size());
  ASSERT_EQ(reader.next(), ReqEvent::kHead);
  EXPECT_EQ(reader.verdict(), 0);
  EXPECT_TRUE(reader.headRequest());
  EXPECT_TRUE(reader.getOrHead());
  EXPECT_TRUE(reader.idempotent());
  EXPECT_FALSE(reader.keepAlive());
  EXPECT_FALSE(reader.chunked());
  EXPECT_FALSE(reader.bodyPending());
  EXPECT_EQ(reader.versionMinor(), 1);
  EXPECT_EQ(reader.target().authority, "h");
  EXPECT_EQ(reader.target().forward, "/p?q");
  EXPECT_EQ(reader.target().path, "/p");
  EXPECT_EQ(findHeader(reader.head(), reader.base(), "connection"), "close");
  EXPECT_EQ(reader.next(), ReqEvent::kComplete);
  EXPECT_TRUE(reader.complete());
}

TEST(RequestReader, Http10WithoutKeepAliveIsNotKeepAlive) {
  BufferPool pool;
  LimitsConfig limits;
  RequestReader reader(pool, limits);
  const std::string bytes = "GET / HTTP/1.0\r\n\r\n";
  ReadRoom room = reader.reserve();
  std::memcpy(room.at, bytes.data(), bytes.size());
  reader.commit(bytes.size());
  ASSERT_EQ(reader.next(), ReqEvent::kHead);
  EXPECT_EQ(reader.verdict(), 0);
  EXPECT_FALSE(reader.keepAlive());
  EXPECT_EQ(reader.versionMinor(), 0);
  EXPECT_EQ(reader.host(), "");
  EXPECT_EQ(reader.next(), ReqEvent::kComplete);
}

TEST(RequestReader, ContentLengthBodyIsForwardedAsIs) {
  const Transcript t = readRequests("POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", whole());
  EXPECT_EQ(t.events, (Events{"head POST /u", "body:hello", "complete"}));
  EXPECT_EQ(t.forwarded, "hello");
}

TEST(RequestReader, ChunkedBodyIsReChunkedWithoutExtensionsButWithItsTrailers) {
  const std::string bytes =
      "POST /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=value\r\nhello\r\n01\r\n!\r\n0\r\nX-Trailer: t\r\nContent-Length: 6\r\nTE: x\r\n"
      "Host: other\r\nX-Checksum: abc\r\n\r\n";
  const Transcript t = readRequests(bytes, whole());
  EXPECT_EQ(t.events, (Events{"head POST /u", "chunk 5", "body:hello", "chunk end", "chunk 1", "body:!",
                              "chunk end", "complete"}));
  // Framing, routing and hop-by-hop fields are not passed on as trailers.
  EXPECT_EQ(t.forwarded, "5\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\nX-Checksum: abc\r\n\r\n");
  expectSplitIndependent(bytes);
}

TEST(RequestReader, TrailersCountApartFromTheHeadAgainstMaxHeaders) {
  LimitsConfig limits;
  limits.max_headers = 3;
  const std::string head = "POST /u HTTP/1.1\r\nHost: h\r\nA: 1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n";
  const Transcript three = readRequests(head + "T1: 1\r\nT2: 2\r\nT3: 3\r\n\r\n", whole(), limits);
  EXPECT_EQ(three.events.back(), "complete");
  EXPECT_EQ(three.forwarded, "1\r\nx\r\n0\r\nT1: 1\r\nT2: 2\r\nT3: 3\r\n\r\n");
  const Transcript four = readRequests(head + "T1: 1\r\nT2: 2\r\nT3: 3\r\nT4: 4\r\n\r\n", whole(), limits);
  EXPECT_EQ(four.events.back(), "error 431");
}

TEST(RequestReader, BodyPendingFollowsTheBody) {
  BufferPool pool;
  LimitsConfig limits;
  RequestReader reader(pool, limits);
  const std::string bytes = "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab";
  ReadRoom room = reader.reserve();
  std::memcpy(room.at, bytes.data(), bytes.size());
  reader.commit(bytes.size());
  ASSERT_EQ(reader.next(), ReqEvent::kHead);
  EXPECT_TRUE(reader.bodyPending());
  ASSERT_EQ(reader.next(), ReqEvent::kBody);
  EXPECT_EQ(reader.body(), "ab");
  EXPECT_EQ(reader.next(), ReqEvent::kNeedMore);
  EXPECT_TRUE(reader.bodyPending());
  room = reader.reserve();
  std::memcpy(room.at, "cd", 2);
  reader.commit(2);
  ASSERT_EQ(reader.next(), ReqEvent::kBody);
  EXPECT_EQ(reader.body(), "cd");
  EXPECT_EQ(reader.next(), ReqEvent::kComplete);
  EXPECT_FALSE(reader.bodyPending());
}

TEST(RequestReader, PipelinedRequestsWaitForNextMessage) {
  BufferPool pool;
  LimitsConfig limits;
  RequestReader reader(pool, limits);
  const std::string first = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string second = "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
  const std::string bytes = first + second;
  ReadRoom room = reader.reserve();
  std::memcpy(room.at, bytes.data(), bytes.size());
  reader.commit(bytes.size());
  ASSERT_EQ(reader.next(), ReqEvent::kHead);
  ASSERT_EQ(reader.next(), ReqEvent::kComplete);
  EXPECT_EQ(reader.unread(), second);  // the leftover bytes
  EXPECT_EQ(reader.next(), ReqEvent::kNeedMore);  // its turn has not come
  reader.nextMessage();
  ASSERT_EQ(reader.next(), ReqEvent::kHead);
  EXPECT_EQ(reader.target().forward, "/2");
  EXPECT_EQ(reader.next(), ReqEvent::kComplete);
  EXPECT_EQ(reader.unread(), "");
}

TEST(RequestReader, PipelinedRequestsSplitAnywhereGiveTheSameEvents) {
  expectSplitIndependent(
      "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
      "POST /3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
      "GET /4 HTTP/1.0\r\n\r\n");
  const Transcript t = readRequests(
      "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nPOST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", byteByByte());
  EXPECT_EQ(t.events, (Events{"head GET /1", "complete", "head POST /2", "body:abc", "complete"}));
}

TEST(RequestReader, ErrorsSplitAnywhereGiveTheSameEvents) {
  LimitsConfig limits;
  limits.max_body_bytes = 8;
  expectSplitIndependent("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n5\r\n", limits);
  expectSplitIndependent("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", limits);
  expectSplitIndependent("GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n", limits);
}

TEST(RequestReader, RefusedUpgradeGoesOnWithTheNextRequest) {
  const Transcript t = readRequests(
      "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
      "GET /next HTTP/1.1\r\nHost: h\r\n\r\n",
      whole());
  EXPECT_EQ(t.events, (Events{"head GET /ws", "complete", "head GET /next", "complete"}));
}

TEST(RequestReader, UpgradeRequestLeavesTheNewProtocolsBytesUnread) {
  BufferPool pool;
  LimitsConfig limits;
  RequestReader reader(pool, limits);
  const std::string bytes =
      std::string("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n") +
      std::string("\x81\x00", 2);
  ReadRoom room = reader.reserve();
  std::memcpy(room.at, bytes.data(), bytes.size());
  reader.commit(bytes.size());
  ASSERT_EQ(reader.next(), ReqEvent::kHead);
  EXPECT_TRUE(reader.upgrade());
  ASSERT_EQ(reader.next(), ReqEvent::kComplete);
  EXPECT_EQ(reader.unread(), std::string("\x81\x00", 2));
  reader.dropUnread();
  EXPECT_EQ(reader.unread(), "");
}

TEST(RequestReader, HeadVerdictsAreTheRequestChecks) {
  auto verdictOf = [](const std::string& bytes, const LimitsConfig& limits = {}) {
    const Transcript t = readRequests(bytes, whole(), limits);
    return t.events.empty() ? std::string() : t.events.front();
  };
  EXPECT_EQ(verdictOf("GET / HTTP/1.1\r\n\r\n"), "head GET / verdict 400");  // no Host
  EXPECT_EQ(verdictOf("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"), "head CONNECT h:443 verdict 405");
  EXPECT_EQ(verdictOf("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            "head POST / verdict 501");
  LimitsConfig small;
  small.max_body_bytes = 4;
  EXPECT_EQ(verdictOf("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", small), "head POST / verdict 413");
}

TEST(RequestReader, RefusedHeadStopsTheReader) {
  BufferPool pool;
  LimitsConfig limits;
  RequestReader reader(pool, limits);
  const std::string bytes = "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
  ReadRoom room = reader.reserve();
  std::memcpy(room.at, bytes.data(), bytes.size());
  reader.commit(bytes.size());
  ASSERT_EQ(reader.next(), ReqEvent::kHead);
  EXPECT_EQ(reader.verdict(), 400);
  EXPECT_EQ(reader.next(), ReqEvent::kError);
  EXPECT_EQ(reader.errorStatus(), 400);
}

TEST(RequestReader, MalformedBytesAre400) {
  EXPECT_EQ(readRequests("GET / HTTP/1.1\r\nHost : h\r\n\r\n", whole()).events, (Events{"error 400"}));
  EXPECT_EQ(readRequests("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", whole()).events,
            (Events{"head POST /", "error 400"}));
  // An invalid Transfer-Encoding llhttp refuses itself is a 400 too (as
  // ClientConnection has always answered).
  EXPECT_EQ(readRequests("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n"
                         "Content-Length: 1\r\n\r\nx",
                         whole())
                .events.back(),
            "error 400");
}

TEST(RequestReader, LongRequestLineIs414) {
  LimitsConfig limits;
  limits.max_request_line = 64;
  const std::string line = "GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n";
  // Whole, the head is refused by the request checks; read in pieces, the
  // request line's bytes so far pass the limit first.
  EXPECT_EQ(readRequests(line, whole(), limits).events, (Events{"head GET /" + std::string(100, 'a') + " verdict 414"}));
  EXPECT_EQ(readRequests(line, byteByByte(), limits).events, (Events{"error 414"}));
}

TEST(RequestReader, LargeHeadIs431AndTooManyHeadersToo) {
  LimitsConfig limits;
  limits.max_header_bytes = 4096;
  const std::string big = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(5000, 'b') + "\r\n\r\n";
  EXPECT_EQ(readRequests(big, whole(), limits).events, (Events{"head GET / verdict 431"}));
  EXPECT_EQ(readRequests(big, randomSplit(3), limits).events, (Events{"error 431"}));
  LimitsConfig few;
  few.max_headers = 2;
  EXPECT_EQ(readRequests("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", whole(), few).events,
            (Events{"error 431"}));
}

TEST(RequestReader, ReadRoomIsAtLeastARead) {
  LimitsConfig limits;
  BufferPool pool;
  RequestReader reader(pool, limits);
  const ReadRoom room = reader.reserve();
  EXPECT_GE(room.size, 4096u);
  EXPECT_EQ(room.refuse, 0);
}

TEST(RequestReader, ChunkOverMaxBodyBytesIs413AtItsSizeLine) {
  LimitsConfig limits;
  limits.max_body_bytes = 8;
  const Transcript t = readRequests(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n5\r\nefghi\r\n0\r\n\r\n", whole(),
      limits);
  EXPECT_EQ(t.events, (Events{"head POST /", "chunk 4", "body:abcd", "chunk end", "error 413 body"}));
  EXPECT_EQ(t.forwarded, "4\r\nabcd\r\n");  // never the size line that promises too much
  const Transcript exact = readRequests(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n", whole(),
      limits);
  EXPECT_EQ(exact.events.back(), "complete");
}

// An idle client gives its reader back to the worker's cache: the buffer and
// the header arrays go with it, and the next client gets a fresh reader, even
// after one that was given back in the middle of a head.
TEST(RequestReaderCache, AReturnedReaderGivesItsMemoryBackAndComesBackFresh) {
  BufferPool pool;
  LimitsConfig limits;
  HeaderStore store;
  RequestReaderCache cache(pool, limits, &store);
  RequestReader* first = nullptr;
  {
    RequestReaderCache::Ptr reader = cache.take();
    first = reader.get();
    const std::string bytes = "GET / HTTP/1.1\r\nHost: h\r\n\r\nPOST /half HTTP/1.1\r\nHo";
    ReadRoom room = reader->reserve();
    std::memcpy(room.at, bytes.data(), bytes.size());
    reader->commit(bytes.size());
    ASSERT_EQ(reader->next(), ReqEvent::kHead);
    ASSERT_EQ(reader->next(), ReqEvent::kComplete);
    reader->nextMessage();
    ASSERT_EQ(reader->next(), ReqEvent::kNeedMore);  // mid-head
    EXPECT_EQ(pool.blocksInUse(), 1u);
  }
  EXPECT_EQ(pool.blocksInUse(), 0u) << "the buffer went back with the reader";
  EXPECT_EQ(cache.cached(), 1u);
  RequestReaderCache::Ptr again = cache.take();
  EXPECT_EQ(again.get(), first) << "the free list is used";
  EXPECT_TRUE(again->unread().empty());
  EXPECT_TRUE(again->inHead());
  const std::string next = "DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n";
  ReadRoom room = again->reserve();
  std::memcpy(room.at, next.data(), next.size());
  again->commit(next.size());
  ASSERT_EQ(again->next(), ReqEvent::kHead) << "no trace of the half head before";
  EXPECT_EQ(again->target().path, "/x");
  EXPECT_EQ(again->verdict(), 0);
  ASSERT_EQ(again->next(), ReqEvent::kComplete);
}

// ---- Responses ----------------------------------------------------------

void expectResponseSplitIndependent(std::string_view bytes, bool head_request = false, bool eof = false) {
  const Transcript one = readResponse(bytes, whole(), head_request, eof);
  EXPECT_EQ(readResponse(bytes, byteByByte(), head_request, eof).events, one.events);
  for (unsigned seed = 1; seed <= 20; ++seed) {
    EXPECT_EQ(readResponse(bytes, randomSplit(seed), head_request, eof).events, one.events) << "seed " << seed;
  }
}

TEST(ResponseReader, ContentLengthBody) {
  const std::string bytes = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  EXPECT_EQ(readResponse(bytes, whole()).events, (Events{"head 200", "body:hello", "complete"}));
  expectResponseSplitIndependent(bytes);
}

TEST(ResponseReader, ChunkedBodyIsDecoded) {
  const std::string bytes = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
  EXPECT_EQ(readResponse(bytes, whole()).events, (Events{"head 200", "body:abcde", "trailer T: 1", "complete"}));
  expectResponseSplitIndependent(bytes);
}

TEST(ResponseReader, TrailersAreReadableAtTheEndWhateverTheSplit) {
  const std::string bytes =
      "HTTP/1.1 200 OK\r\nX-Head: h\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n"
      "Grpc-Status: 0\r\nGrpc-Message: fine\r\n\r\n";
  EXPECT_EQ(readResponse(bytes, whole()).events,
            (Events{"head 200", "body:body", "trailer Grpc-Status: 0", "trailer Grpc-Message: fine", "complete"}));
  expectResponseSplitIndependent(bytes);
  // A message without trailers has none, though the head had fields.
  EXPECT_EQ(readResponse("HTTP/1.1 200 OK\r\nX-Head: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", whole())
                .events,
            (Events{"head 200", "complete"}));
}

TEST(ResponseReader, EmptyBodyEndsWithoutAnotherByte) {
  EXPECT_EQ(readResponse("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", whole()).events,
            (Events{"head 200", "complete"}));
}

TEST(ResponseReader, HeadAnd204And304HaveNoBody) {
  EXPECT_EQ(readResponse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", whole(), /*head_request=*/true).events,
            (Events{"head 200", "complete"}));
  EXPECT_EQ(readResponse("HTTP/1.1 204 No Content\r\n\r\n", whole()).events, (Events{"head 204", "complete"}));
  EXPECT_EQ(readResponse("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", whole()).events,
            (Events{"head 304", "complete"}));
  expectResponseSplitIndependent("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n");
}

TEST(ResponseReader, InterimResponsesComeBeforeTheFinalOne) {
  const std::string bytes =
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  EXPECT_EQ(readResponse(bytes, whole()).events, (Events{"head 100", "head 103", "head 200", "body:ok", "complete"}));
  expectResponseSplitIndependent(bytes);
}

TEST(ResponseReader, InterimResponseWithFramingIsMalformed) {
  EXPECT_EQ(readResponse("HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\n\r\n", whole()).events,
            (Events{"error " + std::to_string(static_cast<int>(ResponseReader::Error::kMalformedHead))}));
}

TEST(ResponseReader, SwitchingProtocolsThenTunnelBytes) {
  const std::string bytes = "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nraw bytes";
  EXPECT_EQ(readResponse(bytes, whole(), false, /*eof=*/true).events,
            (Events{"head 101", "body:raw bytes", "complete"}));
  expectResponseSplitIndependent(bytes, false, true);
}

TEST(ResponseReader, InterimThenSwitchingProtocols) {
  const std::string bytes =
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nab";
  EXPECT_EQ(readResponse(bytes, whole(), false, /*eof=*/true).events,
            (Events{"head 100", "head 101", "body:ab", "complete"}));
  expectResponseSplitIndependent(bytes, false, true);
}

TEST(ResponseReader, InterimResponsesToAHeadRequestThenABodylessFinalOne) {
  const std::string bytes = "HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
  EXPECT_EQ(readResponse(bytes, whole(), /*head_request=*/true).events, (Events{"head 103", "head 200", "complete"}));
  expectResponseSplitIndependent(bytes, /*head_request=*/true);
}

TEST(ResponseReader, CloseDelimitedBodyEndsAtEof) {
  const std::string bytes = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end";
  EXPECT_EQ(readResponse(bytes, whole(), false, /*eof=*/true).events,
            (Events{"head 200", "body:until the end", "complete"}));
  expectResponseSplitIndependent(bytes, false, true);
  BufferPool pool;
  ResponseReader reader(pool);
  reader.begin(false);
  ReadRoom room = reader.reserve();
  std::memcpy(room.at, bytes.data(), bytes.size());
  reader.commit(bytes.size());
  ASSERT_EQ(reader.next(), RespEvent::kHead);
  EXPECT_TRUE(reader.closeDelimited());
  EXPECT_FALSE(reader.keepAlive());
}

TEST(ResponseReader, EofInsideALengthDelimitedBodyIsTruncation) {
  EXPECT_EQ(readResponse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", whole(), false, true).events,
            (Events{"head 200", "body:short",
                    "error " + std::to_string(static_cast<int>(ResponseReader::Error::kTruncated))}));
}

TEST(ResponseReader, BytesAfterTheResponseAreLeftUnread) {
  EXPECT_EQ(readResponse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", whole()).events,
            (Events{"head 200", "body:ok", "complete, unread bytes"}));
  EXPECT_EQ(readResponse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", whole()).events,
            (Events{"head 200", "body:ok", "complete"}));
}

TEST(ResponseReader, ParseErrorsAndHugeHeadsAreErrors) {
  const std::string parse = "error " + std::to_string(static_cast<int>(ResponseReader::Error::kParse));
  EXPECT_EQ(readResponse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", whole()).events,
            (Events{parse}));
  const std::string huge = "HTTP/1.1 200 OK\r\nX: " + std::string(ResponseReader::kMaxHead, 'x') + "\r\n\r\n";
  EXPECT_EQ(readResponse(huge, whole()).events,
            (Events{"error " + std::to_string(static_cast<int>(ResponseReader::Error::kHeadTooLarge))}));
}

TEST(ResponseReader, BeginStartsAFreshResponseOnAReusedReader) {
  BufferPool pool;
  ResponseReader reader(pool);
  for (int round = 0; round < 3; ++round) {
    reader.begin(false);
    const std::string bytes = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
    ReadRoom room = reader.reserve();
    std::memcpy(room.at, bytes.data(), bytes.size());
    reader.commit(bytes.size());
    ASSERT_EQ(reader.next(), RespEvent::kHead);
    ASSERT_EQ(reader.next(), RespEvent::kBody);
    ASSERT_EQ(reader.next(), RespEvent::kComplete);
    EXPECT_TRUE(reader.keepAlive());
    EXPECT_FALSE(reader.closeDelimited());
    EXPECT_FALSE(reader.hasUnread());
  }
}

}  // namespace
}  // namespace poolgate
