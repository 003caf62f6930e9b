#include "admin/text.h"

#include <charconv>

namespace poolgate::render {

namespace {

// Length of the valid UTF-8 sequence at p[i], or 0 when the bytes there are
// not valid UTF-8 (overlongs, surrogates, truncated sequences included).
size_t utf8Length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + need > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < need; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  }
  return need;
}

// Appends s with `escape(out, c)` deciding each ASCII byte (returns false to
// copy it as is); invalid UTF-8 bytes become `replacement`.
template <typename Escape>
void appendEscaped(std::string& out, std::string_view s, std::string_view replacement,
                   Escape escape) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8Length(s, i);
    if (n == 0) {
      out.append(replacement);
      ++i;
    } else if (n == 1) {
      if (!escape(out, s[i])) out.push_back(s[i]);
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
}

}  // namespace

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void appendInt(std::string& out, int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void appendMsAsSeconds(std::string& out, uint64_t ms) {
  appendUint(out, ms / 1000);
  const unsigned frac = static_cast<unsigned>(ms % 1000);
  const char digits[4] = {'.', static_cast<char>('0' + frac / 100),
                          static_cast<char>('0' + frac / 10 % 10),
                          static_cast<char>('0' + frac % 10)};
  out.append(digits, 4);
}

void appendRatio(std::string& out, uint64_t num, uint64_t den) {
  const double v = den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 4);
  out.append(buf, r.ptr);
}

void appendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  appendEscaped(out, s, "\\ufffd", [](std::string& o, char c) {
    switch (c) {
      case '"': o.append("\\\""); return true;
      case '\\': o.append("\\\\"); return true;
      case '\n': o.append("\\n"); return true;
      case '\r': o.append("\\r"); return true;
      case '\t': o.append("\\t"); return true;
      case '\b': o.append("\\b"); return true;
      case '\f': o.append("\\f"); return true;
      default: break;
    }
    if (static_cast<unsigned char>(c) < 0x20) {
      static constexpr char kHex[] = "0123456789abcdef";
      const char esc[6] = {'\\', 'u', '0', '0', kHex[(c >> 4) & 0xF], kHex[c & 0xF]};
      o.append(esc, 6);
      return true;
    }
    return false;
  });
  out.push_back('"');
}

void appendLabelValue(std::string& out, std::string_view s) {
  appendEscaped(out, s, "\xEF\xBF\xBD", [](std::string& o, char c) {
    switch (c) {
      case '"': o.append("\\\""); return true;
      case '\\': o.append("\\\\"); return true;
      case '\n': o.append("\\n"); return true;
      default: return false;
    }
  });
}

void appendHtmlText(std::string& out, std::string_view s) {
  appendEscaped(out, s, "\xEF\xBF\xBD", [](std::string& o, char c) {
    switch (c) {
      case '&': o.append("&amp;"); return true;
      case '<': o.append("&lt;"); return true;
      case '>': o.append("&gt;"); return true;
      case '"': o.append("&quot;"); return true;
      case '\'': o.append("&#39;"); return true;
      default: return false;
    }
  });
}

}  // namespace poolgate::render
