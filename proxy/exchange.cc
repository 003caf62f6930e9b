#include "proxy/exchange.h"

#include <memory>
#include <utility>

namespace poolgate {

ExchangeCache::~ExchangeCache() {
  for (Exchange* exchange : free_) delete exchange;
}

ExchangeCache::Ptr ExchangeCache::take() {
  if (free_.empty()) return Ptr(new Exchange(buffers_), Return{this});
  Exchange* exchange = free_.back();
  free_.pop_back();
  return Ptr(exchange, Return{this});
}

void ExchangeCache::put(Exchange* exchange) {
  if (free_.size() >= kMaxCached) {
    delete exchange;
    return;
  }
  // Reset by construction. What only holds capacity for the next request is
  // kept: the access log's text (allocated once, while the log is on) and
  // the hash header's copy.
  std::unique_ptr<AccessText> text = std::move(exchange->record.text);
  std::string hash_value = std::move(exchange->hash_value);
  hash_value.clear();
  std::destroy_at(exchange);
  std::construct_at(exchange, buffers_);
  exchange->record.text = std::move(text);
  exchange->hash_value = std::move(hash_value);
  free_.push_back(exchange);
}

}  // namespace poolgate
