// H2Session (http/h2_session.h): a real nghttp2 client session on one side,
// the proxy's server session on the other, bytes moved between them in
// memory. What each stream writes is the HTTP/1.1 request poolgate would
// forward; what the client receives shows the resets, the GOAWAYs and the
// window updates.
#include "http/h2_session.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "http/h2_memory.h"

namespace poolgate {
namespace {

class TestSession;

// Takes what is written as it is written, unless told to hold it.
class TestStream final : public H2Stream {
 public:
  TestStream(H2Session& session, BufferPool& buffers, int32_t id) : H2Stream(session, buffers) { beginRequest(id); }

  // Takes what waits in pending_ (all of it), as a reader would.
  void take() {
    written.append(pending_.data(), pending_.size());
    const size_t n = pending_.size();
    pending_.consume(n);
    credit(n);
  }

  std::string written;
  int refused = 0;
  bool hold = false;
  bool closed_seen = false;

 private:
  void onRequestBytes() override {
    if (!hold) take();
  }
  void onRefused(int status) override { refused = status; }
  bool takesData() const override { return true; }
  void onClosed(uint32_t) override { closed_seen = true; }
};

class TestSession final : public H2Session {
 public:
  explicit TestSession(const Config& config) : H2Session(config) { EXPECT_TRUE(startSession()); }

  BufferPool buffers;  // before the streams, whose buffers come from it
  std::map<int32_t, std::unique_ptr<TestStream>> streams;
  bool hold_new_streams = false;
  int floods = 0;

 private:
  H2Stream* openStream(int32_t id) override {
    auto& s = streams[id];
    s = std::make_unique<TestStream>(*this, buffers, id);
    s->hold = hold_new_streams;
    return s.get();
  }
  void onStreamClosed(H2Stream&) override {}
  void onFlood() override { ++floods; }
};

// Fields as nghttp2 takes them (it copies them on submit).
std::vector<nghttp2_nv> nvs(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::vector<nghttp2_nv> nva;
  for (const auto& [name, value] : fields) {
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                   NGHTTP2_NV_FLAG_NONE});
  }
  return nva;
}

// The client: nghttp2's own client session, and what it heard.
class Client {
 public:
  Client() {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, [](nghttp2_session*, int32_t id, uint32_t code, void* self) {
          static_cast<Client*>(self)->closed[id] = code;
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* frame, void* self) {
          if (frame->hd.type == NGHTTP2_GOAWAY) static_cast<Client*>(self)->goaway = frame->goaway.error_code;
          return 0;
        });
    nghttp2_session_client_new(&session, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Client() { nghttp2_session_del(session); }

  // A request of `fields`; with `end`, the HEADERS end the stream.
  int32_t headers(const std::vector<std::pair<std::string, std::string>>& fields, bool end) {
    const std::vector<nghttp2_nv> nva = nvs(fields);
    return nghttp2_submit_headers(session, end ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE, -1, nullptr,
                                  nva.data(), nva.size(), nullptr);
  }
  // Trailers: HEADERS that end stream `id`.
  void trailers(int32_t id, const std::vector<std::pair<std::string, std::string>>& fields) {
    const std::vector<nghttp2_nv> nva = nvs(fields);
    nghttp2_submit_headers(session, NGHTTP2_FLAG_END_STREAM, id, nullptr, nva.data(), nva.size(), nullptr);
  }
  // One DATA frame, written by hand after what the session has queued (the
  // session's own DATA goes through a provider, and stops at the window).
  void data(int32_t id, std::string_view payload, bool end) { raw(NGHTTP2_DATA, end ? 1 : 0, id, payload); }
  void raw(uint8_t type, uint8_t flags, int32_t id, std::string_view payload) {
    flushInto(extra_);
    const size_t n = payload.size();
    const char header[9] = {static_cast<char>(n >> 16), static_cast<char>(n >> 8), static_cast<char>(n),
                            static_cast<char>(type),    static_cast<char>(flags), static_cast<char>(id >> 24),
                            static_cast<char>(id >> 16), static_cast<char>(id >> 8), static_cast<char>(id)};
    extra_.append(header, sizeof header);
    extra_.append(payload);
  }

  // Everything the client has to send.
  std::string output() {
    std::string out = std::move(extra_);
    extra_.clear();
    flushInto(out);
    return out;
  }
  void input(const std::string& bytes) {
    ASSERT_EQ(nghttp2_session_mem_recv(session, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
              static_cast<ssize_t>(bytes.size()));
  }

  nghttp2_session* session = nullptr;
  std::map<int32_t, uint32_t> closed;  // stream id -> error code
  int64_t goaway = -1;

 private:
  void flushInto(std::string& out) {
    for (;;) {
      const uint8_t* bytes = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session, &bytes);
      if (n <= 0) break;
      out.append(reinterpret_cast<const char*>(bytes), static_cast<size_t>(n));
    }
  }
  std::string extra_;
};

class H2SessionTest : public ::testing::Test {
 protected:
  void start() {
    server_ = std::make_unique<TestSession>(config_);
    exchange();
  }
  // Moves bytes both ways until neither side has any.
  bool exchange() {
    bool ok = true;
    for (int round = 0; round < 100; ++round) {
      const std::string to_server = client_.output();
      if (!to_server.empty()) {
        const char* error = nullptr;
        if (!server_->input(reinterpret_cast<const uint8_t*>(to_server.data()), to_server.size(), &error)) ok = false;
      }
      std::string to_client;
      for (;;) {
        const uint8_t* bytes = nullptr;
        const ssize_t n = server_->output(&bytes);
        if (n <= 0) break;
        to_client.append(reinterpret_cast<const char*>(bytes), static_cast<size_t>(n));
      }
      if (!to_client.empty()) client_.input(to_client);
      if (to_server.empty() && to_client.empty()) break;
    }
    return ok;
  }
  TestStream& stream(int32_t id) {
    EXPECT_TRUE(server_->streams.count(id)) << "stream " << id;
    return *server_->streams[id];
  }

  Config config_;
  Client client_;
  std::unique_ptr<TestSession> server_;
};

using Fields = std::vector<std::pair<std::string, std::string>>;

Fields request(std::string method, std::string path) {
  return {{":method", std::move(method)}, {":scheme", "https"}, {":authority", "a.example"}, {":path", std::move(path)}};
}

TEST_F(H2SessionTest, EachStreamIsWrittenAsOneHttp11Request) {
  start();
  const int32_t get = client_.headers(request("GET", "/x"), true);
  Fields post = request("POST", "/u");
  post.push_back({"te", "trailers"});
  const int32_t upload = client_.headers(post, false);
  exchange();
  client_.data(upload, "hello ", false);
  client_.data(upload, "world", false);
  client_.trailers(upload, {{"x-sum", "1"}});
  ASSERT_TRUE(exchange());

  EXPECT_EQ(stream(get).written, "GET /x HTTP/1.1\r\nHost: a.example\r\n\r\n");
  EXPECT_TRUE(stream(get).requestEnded());
  // No content-length: chunked, and the trailers in the last chunk.
  EXPECT_EQ(stream(upload).written,
            "POST /u HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n"
            "6\r\nhello \r\n5\r\nworld\r\n0\r\nx-sum: 1\r\n\r\n");
  EXPECT_TRUE(stream(upload).requestEnded());
  EXPECT_TRUE(client_.closed.empty());  // no response yet: nothing reset
}

// nghttp2 allocates from H2Memory: the blocks its first requests freed serve
// the next ones, instead of malloc.
TEST_F(H2SessionTest, TheSessionAllocatesFromH2Memory) {
  const auto& memory = *static_cast<const H2Memory*>(H2Memory::mem()->mem_user_data);
  start();
  const uint64_t before = memory.reused();
  for (int i = 0; i < 10; ++i) {
    const int32_t id = client_.headers(request("GET", "/r" + std::to_string(i)), true);
    ASSERT_TRUE(exchange());
    EXPECT_TRUE(stream(id).requestEnded());
  }
  EXPECT_GT(memory.reused(), before + 10);
}

TEST_F(H2SessionTest, AConnectionSpecificTrailerResetsTheStream) {
  start();
  const int32_t id = client_.headers(request("POST", "/t"), false);
  exchange();
  client_.data(id, "x", false);
  client_.trailers(id, {{"x-sum", "1"}, {"connection", "close"}});
  ASSERT_TRUE(exchange());
  // Head and body went; the request never ends, so no last chunk: the
  // upstream sees a request cut short, never a whole one without the check.
  EXPECT_EQ(stream(id).written, "POST /t HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n");
  EXPECT_FALSE(stream(id).requestEnded());
  EXPECT_EQ(client_.closed[id], static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
}

TEST_F(H2SessionTest, AMalformedFieldResetsTheStreamAndWritesNothing) {
  start();
  Fields bad = request("GET", "/");
  bad.push_back({"connection", "close"});
  const int32_t id = client_.headers(bad, true);
  const int32_t next = client_.headers(request("GET", "/next"), true);
  ASSERT_TRUE(exchange());
  EXPECT_EQ(stream(id).written, "");
  EXPECT_TRUE(stream(id).closed());
  ASSERT_TRUE(client_.closed.count(id));
  EXPECT_EQ(client_.closed[id], static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
  // The connection goes on.
  EXPECT_EQ(stream(next).written, "GET /next HTTP/1.1\r\nHost: a.example\r\n\r\n");
}

TEST_F(H2SessionTest, AHeaderListOverTheLimitIsRefusedWith431) {
  config_.http2.max_header_list_bytes = 256;
  start();
  Fields big = request("GET", "/");
  big.push_back({"x-big", std::string(300, 'z')});
  const int32_t id = client_.headers(big, true);
  ASSERT_TRUE(exchange());
  EXPECT_EQ(stream(id).refused, 431);
  EXPECT_EQ(stream(id).written, "");
}

TEST_F(H2SessionTest, DataIsCreditedOnlyAsItIsTaken) {
  config_.http2.initial_window_bytes = 16;
  start();
  server_->hold_new_streams = true;
  const int32_t id = client_.headers(request("POST", "/slow"), false);
  exchange();
  client_.data(id, std::string(16, 'a'), false);
  ASSERT_TRUE(exchange());
  // Held: the 16 bytes stay unacknowledged (no WINDOW_UPDATE), so the
  // client's window for the stream stays spent.
  EXPECT_EQ(stream(id).written, "");
  EXPECT_EQ(nghttp2_session_get_stream_effective_recv_data_length(server_->session(), id), 16);
  stream(id).take();
  ASSERT_TRUE(exchange());
  EXPECT_EQ(nghttp2_session_get_stream_effective_recv_data_length(server_->session(), id), 0);
  EXPECT_EQ(stream(id).written,
            "POST /slow HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n10\r\naaaaaaaaaaaaaaaa\r\n");
}

TEST_F(H2SessionTest, ContentLengthIsCheckedAgainstTheData) {
  start();
  Fields post = request("POST", "/cl");
  post.push_back({"content-length", "3"});
  const int32_t id = client_.headers(post, false);
  exchange();
  client_.data(id, "abcd", true);  // one byte more than announced
  ASSERT_TRUE(exchange());
  // The head went; not a byte of the body, and the stream never ended.
  EXPECT_EQ(stream(id).written, "POST /cl HTTP/1.1\r\nHost: a.example\r\ncontent-length: 3\r\n\r\n");
  EXPECT_FALSE(stream(id).requestEnded());
  ASSERT_TRUE(client_.closed.count(id));
  EXPECT_EQ(client_.closed[id], static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
}

std::string u32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}
std::string initialWindow(uint32_t v) { return std::string("\0\x04", 2) + u32(v); }

// RFC 9113 section 6.9.2, which nghttp2 1.52 leaves to a stream error.
TEST_F(H2SessionTest, AnInitialWindowThatOverflowsAStreamIsAConnectionError) {
  start();
  const int32_t id = client_.headers(request("POST", "/w"), false);
  ASSERT_TRUE(exchange());
  client_.raw(NGHTTP2_WINDOW_UPDATE, 0, id, u32(NGHTTP2_MAX_WINDOW_SIZE - 65535));
  ASSERT_TRUE(exchange());
  EXPECT_EQ(nghttp2_session_get_stream_remote_window_size(server_->session(), id), NGHTTP2_MAX_WINDOW_SIZE);
  client_.raw(NGHTTP2_SETTINGS, 0, 0, initialWindow(65536));
  EXPECT_FALSE(exchange());
  EXPECT_EQ(client_.goaway, NGHTTP2_FLOW_CONTROL_ERROR);
}

TEST_F(H2SessionTest, AnInitialWindowChangeWithinBoundsApplies) {
  start();
  const int32_t id = client_.headers(request("POST", "/w"), false);
  ASSERT_TRUE(exchange());
  // Two entries, the frame fed one byte at a time: the last value counts.
  std::string frame(9, '\0');
  const std::string payload = initialWindow(1000) + initialWindow(100000);
  frame[2] = static_cast<char>(payload.size());
  frame[3] = NGHTTP2_SETTINGS;
  frame += payload;
  for (char c : frame) {
    const char* error = nullptr;
    ASSERT_TRUE(server_->input(reinterpret_cast<const uint8_t*>(&c), 1, &error)) << error;
  }
  EXPECT_EQ(nghttp2_session_get_remote_settings(server_->session(), NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE), 100000u);
  EXPECT_EQ(nghttp2_session_get_stream_remote_window_size(server_->session(), id), 100000);
  exchange();
  EXPECT_EQ(client_.goaway, -1);
}

// GET / to a.example, with static-table references and a literal that does
// not touch the HPACK table: a header block any decoder takes as it is.
const std::string kPlainGetBlock = std::string("\x82\x87\x84\x01\x09", 5) + "a.example";

TEST_F(H2SessionTest, HeadersOnASkippedStreamIdIsAConnectionError) {
  start();
  nghttp2_session_set_next_stream_id(client_.session, 5);
  const int32_t five = client_.headers(request("GET", "/five"), true);
  ASSERT_EQ(five, 5);
  ASSERT_TRUE(exchange());
  // Opening 5 closed the idle streams 1 and 3 (RFC 9113 section 5.1.1). The
  // frame comes a byte at a time: its header may end in any read.
  client_.raw(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 3, kPlainGetBlock);
  const std::string frame = client_.output();
  bool refused = false;
  for (char c : frame) {
    const char* error = nullptr;
    if (!server_->input(reinterpret_cast<const uint8_t*>(&c), 1, &error)) {
      refused = true;
      break;
    }
  }
  EXPECT_TRUE(refused);
  exchange();
  EXPECT_EQ(client_.goaway, NGHTTP2_PROTOCOL_ERROR);
  EXPECT_EQ(server_->streams.count(3), 0u);  // nothing of it was taken
  EXPECT_EQ(stream(5).written, "GET /five HTTP/1.1\r\nHost: a.example\r\n\r\n");
}

// The same check must not refuse a lower id that was used: here, trailers on
// a stream opened before the last one, with an id skipped below both. (HEADERS
// on a used stream that has closed are nghttp2's to judge.)
TEST_F(H2SessionTest, HeadersOnAStreamUsedBeforeAreNotTakenForASkippedId) {
  start();
  nghttp2_session_set_next_stream_id(client_.session, 3);  // 1 skipped
  Fields post = request("POST", "/up");
  post.push_back({"te", "trailers"});
  const int32_t upload = client_.headers(post, false);  // 3
  const int32_t get = client_.headers(request("GET", "/x"), true);  // 5
  ASSERT_TRUE(exchange());
  client_.trailers(upload, {{"x-sum", "1"}});
  ASSERT_TRUE(exchange());
  EXPECT_EQ(client_.goaway, -1);
  EXPECT_TRUE(stream(upload).requestEnded());
  EXPECT_NE(stream(upload).written.find("x-sum: 1"), std::string::npos) << stream(upload).written;
  EXPECT_TRUE(stream(get).requestEnded());
}

TEST_F(H2SessionTest, FramesThatDoNoWorkRunOutTheBudget) {
  start();
  // In batches, so that the PING replies are read (nghttp2's own limit on
  // unread replies is another defence).
  for (int batch = 0; batch < 11; ++batch) {
    for (int i = 0; i < 100; ++i) client_.raw(NGHTTP2_PING, 0, 0, "12345678");
    exchange();
  }
  EXPECT_EQ(server_->floods, 1);
  EXPECT_EQ(client_.goaway, NGHTTP2_ENHANCE_YOUR_CALM);
}

TEST_F(H2SessionTest, RequestsRefillTheBudget) {
  start();
  // 900 PINGs, 10 requests, 250 PINGs: over the budget of 1000 without the
  // requests' refill, under it with.
  for (int batch = 0; batch < 9; ++batch) {
    for (int i = 0; i < 100; ++i) client_.raw(NGHTTP2_PING, 0, 0, "12345678");
    ASSERT_TRUE(exchange());
  }
  for (int i = 0; i < 10; ++i) client_.headers(request("GET", "/" + std::to_string(i)), true);
  ASSERT_TRUE(exchange());
  for (int batch = 0; batch < 5; ++batch) {
    for (int i = 0; i < 50; ++i) client_.raw(NGHTTP2_PING, 0, 0, "12345678");
    ASSERT_TRUE(exchange());
  }
  EXPECT_EQ(server_->floods, 0);
  EXPECT_EQ(client_.goaway, -1);
}

}  // namespace
}  // namespace poolgate
