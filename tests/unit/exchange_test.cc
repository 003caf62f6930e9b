// Exchange (proxy/exchange.h): its own bookkeeping, and the per-worker free
// list of exchanges.
#include "proxy/exchange.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "http/request_reader.h"

namespace poolgate {
namespace {

TEST(ExchangeCache, AReturnedExchangeComesBackAsConstructed) {
  BufferPool buffers(1024);
  ExchangeCache cache(buffers);
  Exchange* first = nullptr;
  {
    ExchangeCache::Ptr ex = cache.take();
    first = ex.get();
    ex->server_index = 3;
    ex->queued_server = 1;
    ex->attempts = 2;
    ex->tried.add(5);
    ex->request_complete = ex->response_started = ex->keep_alive = ex->upgrade = true;
    ex->body_path = BodyPath::kSpooled;
    ex->framing = Framing::kChunked;
    ex->released_ms = 99;
    ex->record.status = 502;
    ex->record.error = "connect_failed";
    ex->record_pending = true;
    ex->held.append("GET / HTTP/1.1\r\n");
    ASSERT_EQ(buffers.blocksInUse(), 1u);
  }
  EXPECT_EQ(cache.cached(), 1u);
  EXPECT_EQ(buffers.blocksInUse(), 0u) << "the held bytes went back to the buffer pool";
  ExchangeCache::Ptr again = cache.take();
  EXPECT_EQ(again.get(), first) << "the free list is used";
  EXPECT_EQ(cache.cached(), 0u);
  EXPECT_EQ(again->server_index, -1);
  EXPECT_EQ(again->queued_server, -1);
  EXPECT_EQ(again->attempts, 0u);
  EXPECT_FALSE(again->tried.contains(5));
  EXPECT_FALSE(again->request_complete);
  EXPECT_FALSE(again->response_started);
  EXPECT_FALSE(again->keep_alive);
  EXPECT_FALSE(again->upgrade);
  EXPECT_TRUE(again->route_buffers);
  EXPECT_EQ(again->body_path, BodyPath::kDirect);
  EXPECT_EQ(again->framing, Framing::kNone);
  EXPECT_EQ(again->released_ms, 0u);
  EXPECT_EQ(again->record.status, 0);
  EXPECT_EQ(again->record.error, nullptr);
  EXPECT_FALSE(again->record_pending);
  EXPECT_TRUE(again->held.empty());
  EXPECT_EQ(again->upstream, nullptr);
}

// The access log's text is allocated once per exchange slot, not per request.
TEST(ExchangeCache, KeepsTheAccessTextAndTheHashCopyCapacity) {
  BufferPool buffers(1024);
  ExchangeCache cache(buffers);
  AccessText* text = nullptr;
  {
    ExchangeCache::Ptr ex = cache.take();
    ex->record.text = std::make_unique<AccessText>();
    ex->record.text->method = "GET";
    text = ex->record.text.get();
    ex->hash_value.assign(100, 'h');
  }
  ExchangeCache::Ptr again = cache.take();
  EXPECT_EQ(again->record.text.get(), text);
  EXPECT_TRUE(again->hash_value.empty());
  EXPECT_GE(again->hash_value.capacity(), 100u);
}

TEST(ExchangeCache, KeepsAtMostItsCap) {
  BufferPool buffers(1024);
  ExchangeCache cache(buffers);
  {
    std::vector<ExchangeCache::Ptr> many;
    for (int i = 0; i < 300; ++i) many.push_back(cache.take());
  }
  EXPECT_EQ(cache.cached(), 256u) << "past the cap, returned exchanges are freed";
}

// A reader holding one parsed request head.
struct ReadHead {
  ReadHead(BufferPool& buffers, const std::string& bytes) : reader(buffers, limits) {
    ReadRoom room = reader.reserve();
    std::memcpy(room.at, bytes.data(), bytes.size());
    reader.commit(bytes.size());
    event = reader.next();
  }
  LimitsConfig limits;
  RequestReader reader;
  RequestReader::Event event;
};

TEST(Exchange, BeginRequestKeepsWhatTheExchangeNeedsOfTheHead) {
  BufferPool buffers(1024);
  ReadHead read(buffers,
                "HEAD /x?y HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nConnection: close\r\n"
                "User-Agent: ua/1\r\nReferer: http://r/\r\n\r\n");
  ASSERT_EQ(read.event, RequestReader::Event::kHead);
  Exchange ex(buffers);
  ex.beginRequest(read.reader, /*log_text=*/true);
  EXPECT_TRUE(ex.head_request);
  EXPECT_TRUE(ex.idempotent);
  EXPECT_FALSE(ex.keep_alive);
  EXPECT_TRUE(ex.expect_continue);
  EXPECT_FALSE(ex.upgrade);
  EXPECT_FALSE(ex.request_chunked);
  EXPECT_TRUE(ex.record_pending);
  EXPECT_EQ(ex.record.http_minor, 1);
  ASSERT_NE(ex.record.text, nullptr);
  EXPECT_EQ(ex.record.text->method, "HEAD");
  EXPECT_EQ(ex.record.text->target, "/x?y");
  EXPECT_EQ(ex.record.text->user_agent, "ua/1");
  EXPECT_EQ(ex.record.text->referer, "http://r/");

  Exchange quiet(buffers);
  quiet.beginRequest(read.reader, /*log_text=*/false);
  EXPECT_TRUE(quiet.record_pending);
  EXPECT_EQ(quiet.record.text, nullptr) << "no access log: no text is copied";
}

TEST(Exchange, ARecordIsLoggedOnceAndAClosedClientGets499) {
  BufferPool buffers(1024);
  ReadHead read(buffers, "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
  ASSERT_EQ(read.event, RequestReader::Event::kHead);
  Exchange ex(buffers);
  ex.beginRequest(read.reader, false);
  EXPECT_TRUE(ex.request_chunked);
  EXPECT_FALSE(ex.idempotent);
  EXPECT_TRUE(ex.keep_alive);
  ex.logClosed(nullptr, 1234);
  EXPECT_FALSE(ex.record_pending);
  EXPECT_EQ(ex.record.status, 499);
  EXPECT_STREQ(ex.record.error, "client_closed");
  EXPECT_EQ(ex.record.upstream_done_ms, 1234u);

  Exchange answered(buffers);
  answered.beginRequest(read.reader, false);
  answered.record.status = 502;
  answered.record.error = "connect_failed";
  answered.log(nullptr);
  EXPECT_FALSE(answered.record_pending);
  answered.logClosed(nullptr, 99);  // already logged: nothing changes
  EXPECT_EQ(answered.record.status, 502);
  EXPECT_STREQ(answered.record.error, "connect_failed");
  EXPECT_EQ(answered.record.upstream_done_ms, 0u);
}

}  // namespace
}  // namespace poolgate
