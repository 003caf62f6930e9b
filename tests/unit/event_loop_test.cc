// EventLoop: edge-triggered registration, deferred deletion, timers from
// runOnce(). Every runOnce() here either has an event ready or uses a zero
// timeout, so nothing waits.
#include "core/event_loop.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

namespace poolgate {
namespace {

struct SocketPair {
  SocketPair() {
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0) {
      a.reset(fds[0]);
      b.reset(fds[1]);
    }
  }
  Fd a;
  Fd b;
};

void writeByte(int fd) {
  char c = 'x';
  ASSERT_EQ(::write(fd, &c, 1), 1);
}

class CountingHandler : public IoHandler {
 public:
  void onIoEvent(uint32_t events) noexcept override {
    ++calls;
    last_events = events;
  }
  int calls = 0;
  uint32_t last_events = 0;
};

TEST(EventLoop, IsValidAfterConstruction) {
  EventLoop loop;
  EXPECT_TRUE(loop.valid());
}

TEST(EventLoop, ReadableSocketFiresItsHandler) {
  EventLoop loop;
  SocketPair pair;
  ASSERT_TRUE(pair.a && pair.b);
  CountingHandler handler;
  ASSERT_TRUE(loop.add(pair.a.get(), EPOLLIN | EPOLLET, &handler));

  writeByte(pair.b.get());
  loop.runOnce(1000);  // returns at once: the event is ready
  EXPECT_EQ(handler.calls, 1);
  EXPECT_TRUE(handler.last_events & EPOLLIN);
}

TEST(EventLoop, NoEventNoCall) {
  EventLoop loop;
  SocketPair pair;
  CountingHandler handler;
  ASSERT_TRUE(loop.add(pair.a.get(), EPOLLIN | EPOLLET, &handler));
  loop.runOnce(0);
  EXPECT_EQ(handler.calls, 0);
}

TEST(EventLoop, EdgeTriggeredFiresOncePerEdge) {
  EventLoop loop;
  SocketPair pair;
  CountingHandler handler;
  ASSERT_TRUE(loop.add(pair.a.get(), EPOLLIN | EPOLLET, &handler));

  writeByte(pair.b.get());
  loop.runOnce(1000);
  EXPECT_EQ(handler.calls, 1);

  loop.runOnce(0);  // the byte is still unread, but no new edge
  EXPECT_EQ(handler.calls, 1);

  writeByte(pair.b.get());  // new data: a new edge
  loop.runOnce(1000);
  EXPECT_EQ(handler.calls, 2);
}

TEST(EventLoop, RegisteredForBothDirectionsReportsWritable) {
  EventLoop loop;
  SocketPair pair;
  CountingHandler handler;
  ASSERT_TRUE(loop.add(pair.a.get(), EPOLLIN | EPOLLOUT | EPOLLET, &handler));
  loop.runOnce(1000);  // an empty socket is writable at once
  EXPECT_EQ(handler.calls, 1);
  EXPECT_TRUE(handler.last_events & EPOLLOUT);
  EXPECT_FALSE(handler.last_events & EPOLLIN);
}

TEST(EventLoop, PeerCloseIsReported) {
  EventLoop loop;
  SocketPair pair;
  CountingHandler handler;
  ASSERT_TRUE(loop.add(pair.a.get(), EPOLLIN | EPOLLRDHUP | EPOLLET, &handler));
  pair.b.reset();
  loop.runOnce(1000);
  EXPECT_EQ(handler.calls, 1);
  EXPECT_TRUE(handler.last_events & (EPOLLRDHUP | EPOLLHUP));
}

TEST(EventLoop, RemovedDescriptorNoLongerFires) {
  EventLoop loop;
  SocketPair pair;
  CountingHandler handler;
  ASSERT_TRUE(loop.add(pair.a.get(), EPOLLIN | EPOLLET, &handler));
  loop.remove(pair.a.get());
  writeByte(pair.b.get());
  loop.runOnce(0);
  EXPECT_EQ(handler.calls, 0);
}

TEST(EventLoop, ModifyRetargetsTheHandler) {
  EventLoop loop;
  SocketPair pair;
  CountingHandler first, second;
  ASSERT_TRUE(loop.add(pair.a.get(), EPOLLIN | EPOLLET, &first));
  ASSERT_TRUE(loop.modify(pair.a.get(), EPOLLIN | EPOLLET, &second));
  writeByte(pair.b.get());
  loop.runOnce(1000);
  EXPECT_EQ(first.calls, 0);
  EXPECT_EQ(second.calls, 1);
}

TEST(EventLoop, AddingABadDescriptorFails) {
  EventLoop loop;
  CountingHandler handler;
  EXPECT_FALSE(loop.add(-1, EPOLLIN, &handler));
}

// ---- deferred deletion ---------------------------------------------------

// Records its events and its destruction in a shared journal.
class Connection : public IoHandler, public Deletable {
 public:
  Connection(EventLoop& loop, std::string name, std::vector<std::string>& journal)
      : loop_(loop), name_(std::move(name)), journal_(journal) {}
  ~Connection() override {
    alive_ = false;
    journal_.push_back(name_ + " destroyed");
  }

  void onIoEvent(uint32_t) noexcept override {
    journal_.push_back(name_ + (alive_ ? " event" : " event-after-free"));
    if (victim_ != nullptr) {
      loop_.deferDelete(static_cast<Deletable*>(victim_));
      victim_ = nullptr;
    }
  }

  Connection* victim_ = nullptr;  // deferDelete()d on this connection's next event

 private:
  EventLoop& loop_;
  std::string name_;
  std::vector<std::string>& journal_;
  bool alive_ = true;
};

TEST(EventLoop, DeferDeleteDestroysAfterTheBatch) {
  EventLoop loop;
  std::vector<std::string> journal;
  auto* object = new Connection(loop, "a", journal);
  loop.deferDelete(static_cast<Deletable*>(object));
  EXPECT_TRUE(journal.empty());  // not yet
  loop.runOnce(0);
  EXPECT_EQ(journal, std::vector<std::string>{"a destroyed"});
}

TEST(EventLoop, DeferDeleteAcceptsUniquePtr) {
  EventLoop loop;
  std::vector<std::string> journal;
  loop.deferDelete(std::make_unique<Connection>(loop, "a", journal));
  EXPECT_TRUE(journal.empty());
  loop.runOnce(0);
  EXPECT_EQ(journal, std::vector<std::string>{"a destroyed"});
}

TEST(EventLoop, PendingDeferredObjectsAreFreedWithTheLoop) {
  std::vector<std::string> journal;
  {
    EventLoop loop;
    loop.deferDelete(std::make_unique<Connection>(loop, "a", journal));
  }
  EXPECT_EQ(journal, std::vector<std::string>{"a destroyed"});
}

// Two connections are ready in the same batch; whichever runs first deletes
// the other. The other must still be alive for its own event of that batch.
TEST(EventLoop, ObjectDeferDeletedMidBatchStillReceivesItsEvent) {
  EventLoop loop;
  std::vector<std::string> journal;
  SocketPair pair1, pair2;
  auto* one = new Connection(loop, "one", journal);
  auto* two = new Connection(loop, "two", journal);
  one->victim_ = two;
  two->victim_ = one;
  ASSERT_TRUE(loop.add(pair1.a.get(), EPOLLIN | EPOLLET, one));
  ASSERT_TRUE(loop.add(pair2.a.get(), EPOLLIN | EPOLLET, two));
  writeByte(pair1.b.get());
  writeByte(pair2.b.get());

  loop.runOnce(1000);
  ASSERT_EQ(journal.size(), 4u);
  // Both events were delivered to live objects before either was destroyed.
  EXPECT_EQ(journal[0].substr(journal[0].find(' ')), " event");
  EXPECT_EQ(journal[1].substr(journal[1].find(' ')), " event");
  EXPECT_EQ(journal[2].substr(journal[2].find(' ')), " destroyed");
  EXPECT_EQ(journal[3].substr(journal[3].find(' ')), " destroyed");
  loop.remove(pair1.a.get());
  loop.remove(pair2.a.get());
}

TEST(EventLoop, DestructorThatDefersMoreIsDrained) {
  struct Parent : Deletable {
    Parent(EventLoop& loop, std::vector<std::string>& journal) : loop(loop), journal(journal) {}
    ~Parent() override {
      journal.push_back("parent destroyed");
      loop.deferDelete(std::make_unique<Connection>(loop, "child", journal));
    }
    EventLoop& loop;
    std::vector<std::string>& journal;
  };
  EventLoop loop;
  std::vector<std::string> journal;
  loop.deferDelete(std::make_unique<Parent>(loop, journal));
  loop.runOnce(0);
  EXPECT_EQ(journal, (std::vector<std::string>{"parent destroyed", "child destroyed"}));
}

// ---- timers ----------------------------------------------------------------

TEST(EventLoop, DueTimerRunsFromRunOnce) {
  EventLoop loop;
  int fired = 0;
  Timer timer(loop.timers(), [&] { ++fired; });
  timer.arm(0);  // due now; the loop's clock only moves forward
  loop.runOnce(0);
  EXPECT_EQ(fired, 1);
}

TEST(EventLoop, FutureTimerDoesNotRunYet) {
  EventLoop loop;
  int fired = 0;
  Timer timer(loop.timers(), [&] { ++fired; });
  timer.arm(3'600'000);
  loop.runOnce(0);
  EXPECT_EQ(fired, 0);
  EXPECT_TRUE(timer.armed());
}

TEST(EventLoop, TimerCallbackCanDeferDeleteAndItIsFreedInTheSameRun) {
  EventLoop loop;
  std::vector<std::string> journal;
  auto owned = std::make_unique<Connection>(loop, "a", journal);
  Timer timer(loop.timers(), [&] { loop.deferDelete(std::move(owned)); });
  timer.arm(0);
  loop.runOnce(0);
  EXPECT_EQ(journal, std::vector<std::string>{"a destroyed"});
}

TEST(EventLoop, RunReturnsAfterStopFromATimer) {
  EventLoop loop;
  int fired = 0;
  Timer timer(loop.timers(), [&] {
    ++fired;
    loop.stop();
  });
  timer.arm(0);
  loop.run();
  EXPECT_EQ(fired, 1);
}

TEST(EventLoop, NowFollowsTheTimerQueue) {
  EventLoop loop;
  EXPECT_EQ(loop.now(), loop.timers().now());
  uint64_t before = loop.now();
  loop.runOnce(0);
  EXPECT_GE(loop.now(), before);
}

}  // namespace
}  // namespace poolgate
