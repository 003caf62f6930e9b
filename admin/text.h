// Text helpers of the admin renderers: numbers without locale or
// allocation, and escaping for JSON strings, Prometheus label values and
// HTML text (invalid UTF-8 becomes U+FFFD).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace poolgate::render {

void appendUint(std::string& out, uint64_t v);
void appendInt(std::string& out, int64_t v);
// Milliseconds as seconds with exactly 3 decimals ("12.500"): integer math,
// independent of the locale.
void appendMsAsSeconds(std::string& out, uint64_t ms);
// num / den with 4 decimals (0 when den is 0).
void appendRatio(std::string& out, uint64_t num, uint64_t den);
// Elapsed ms; 0 when the start is unset (0) or in the future (clock steps).
inline uint64_t msSince(uint64_t since, uint64_t now) {
  return since != 0 && now > since ? now - since : 0;
}

void appendJsonString(std::string& out, std::string_view s);  // with the quotes
void appendLabelValue(std::string& out, std::string_view s);  // Prometheus, without the quotes
void appendHtmlText(std::string& out, std::string_view s);

}  // namespace poolgate::render
