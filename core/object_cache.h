// ObjectCache: a per-worker free list of objects that are held only while
// they are in use (an exchange while a request is in flight, a request reader
// while a client is sending).
//
// take() hands out an object as freshly constructed; when its Ptr goes, the
// object is reset by construction (destroyed and constructed again in place,
// with the arguments the cache was made with: nothing to forget to clear) and
// kept for the next take(), so that steady traffic allocates none. Past
// `max_cached` waiting objects, a returned one is freed.
//
// A type may keep capacity across the reset (a string's allocation, say):
// if it has `auto keep()` and `void restore(decltype(keep())&&)`, put() calls
// keep() before the reset and restore() after it.
#pragma once

#include <cstddef>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

namespace poolgate {

template <class T, class... Args>
class ObjectCache {
 public:
  explicit ObjectCache(size_t max_cached, Args... args) : max_cached_(max_cached), args_(args...) {}
  ~ObjectCache() {
    for (T* object : free_) delete object;
  }
  ObjectCache(const ObjectCache&) = delete;
  ObjectCache& operator=(const ObjectCache&) = delete;

  // Returns an object to its cache when it goes.
  struct Return {
    ObjectCache* cache = nullptr;
    void operator()(T* object) const { cache->put(object); }
  };
  using Ptr = std::unique_ptr<T, Return>;

  Ptr take() {
    if (free_.empty()) return Ptr(std::apply([](Args... a) { return new T(a...); }, args_), Return{this});
    T* object = free_.back();
    free_.pop_back();
    return Ptr(object, Return{this});
  }
  size_t cached() const { return free_.size(); }

 private:
  void put(T* object) {
    if (free_.size() >= max_cached_) {
      delete object;
      return;
    }
    if constexpr (requires(T& t) { t.restore(t.keep()); }) {
      auto kept = object->keep();
      reset(object);
      object->restore(std::move(kept));
    } else {
      reset(object);
    }
    free_.push_back(object);
  }
  void reset(T* object) {
    std::destroy_at(object);
    std::apply([object](Args... a) { std::construct_at(object, a...); }, args_);
  }

  size_t max_cached_;
  std::tuple<Args...> args_;
  std::vector<T*> free_;
};

}  // namespace poolgate
