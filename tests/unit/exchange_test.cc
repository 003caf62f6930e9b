// ExchangeCache: the per-worker free list of exchanges (proxy/exchange.h).
#include "proxy/exchange.h"

#include <gtest/gtest.h>

#include <vector>

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

}  // namespace
}  // namespace poolgate
