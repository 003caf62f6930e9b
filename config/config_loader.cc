// Reading a libconfig file into the typed Config of config.h.
//
// Every group is read through a table of its known keys: a setting whose name
// is not in the table is an error, a known one is handed to a typed reader that
// checks its type and range. Errors are collected, each located as
// "file:line: path: what", and thrown together as one ConfigError once the
// whole file has been read. Paths read like C++: "upstreams[0].pool.max_idle".
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <libconfig.h++>
#include <limits>
#include <tuple>
#include <unordered_map>

#include "config/config.h"

namespace poolgate {
namespace {

using libconfig::Setting;

// ---------------------------------------------------------------------------
// Files and lines.

// The file a setting was read from, as libconfig recorded it: nullptr for the
// main text, or an @include name as written, which is relative to the main
// file's folder (the include dir).
std::string sourceName(const char* recorded, const std::string& main_file) {
  if (recorded == nullptr || main_file == recorded) return main_file;
  std::filesystem::path included(recorded);
  if (included.is_absolute()) return included.string();
  return (std::filesystem::path(main_file).parent_path() / included).string();
}

// The trimmed text of line `number` (1-based) of `text`, or "".
std::string lineOf(const std::string& text, int number) {
  size_t start = 0;
  for (int line = 1; line < number; ++line) {
    start = text.find('\n', start);
    if (start == std::string::npos) return "";
    ++start;
  }
  std::string line = text.substr(start, text.find('\n', start) - start);
  size_t first = line.find_first_not_of(" \t\r");
  size_t last = line.find_last_not_of(" \t\r");
  return first == std::string::npos ? "" : line.substr(first, last - first + 1);
}

bool readWholeFile(const std::string& path, std::string* out, int* error) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = errno;
    return false;
  }
  char chunk[16384];
  while (true) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n > 0) {
      out->append(chunk, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      *error = errno;
      close(fd);
      return false;
    }
  }
  close(fd);
  return true;
}

// ---------------------------------------------------------------------------
// Where settings are, and the errors about them.

std::string joinPath(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "." + name;
}

// "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a" -> "".
std::string parentPath(const std::string& path) {
  size_t cut = path.back() == ']' ? path.rfind('[') : path.rfind('.');
  return cut == std::string::npos ? std::string() : path.substr(0, cut);
}

// A setting together with its path as shown in messages.
struct Node {
  const Setting& setting;
  std::string path;

  int size() const { return setting.getLength(); }
  Node child(int index) const {
    const Setting& element = setting[index];
    if (element.getName() != nullptr) return {element, joinPath(path, element.getName())};
    return {element, path + "[" + std::to_string(index) + "]"};
  }
  std::string name() const { return setting.getName() != nullptr ? setting.getName() : ""; }
  bool has(const char* key) const { return setting.exists(key); }
};

struct Location {
  std::string file;
  unsigned line = 1;
};

class Loader {
 public:
  Loader(std::string file, const std::string& text) : file_(std::move(file)) {
    texts_[file_] = text;
  }

  // Remembers where `node` is written, for messages about it or its children.
  void visit(const Node& node) {
    unsigned line = node.setting.getSourceLine();
    locations_[node.path] =
        Location{sourceName(node.setting.getSourceFile(), file_), line == 0 ? 1 : line};
  }

  void error(const Node& node, const std::string& what) {
    visit(node);
    error(node.path, what);
  }

  // `path` need not exist in the file (a missing setting): the message then
  // carries the line of its nearest ancestor that does.
  void error(const std::string& path, const std::string& what) {
    Location where = locate(path);
    std::string prefix = where.file + ":" + std::to_string(where.line) + ": ";
    errors_.push_back({where, prefix + (path.empty() ? "" : path + ": ") + what});
  }

  Location locate(std::string path) const {
    while (true) {
      auto found = locations_.find(path);
      if (found != locations_.end()) return found->second;
      if (path.empty()) return Location{file_, 1};
      path = parentPath(path);
    }
  }

  // The folder relative paths written at `node` are taken from.
  std::filesystem::path baseDir(const Node& node) const {
    return folderOf(sourceName(node.setting.getSourceFile(), file_));
  }

  static std::filesystem::path folderOf(const std::string& file) {
    std::error_code ignored;
    std::filesystem::path absolute = std::filesystem::absolute(file, ignored);
    if (absolute.empty()) absolute = file;
    return absolute.parent_path();
  }

  // The text of the line `node` is written on ("" when unknown).
  std::string lineText(const Node& node) {
    std::string file = sourceName(node.setting.getSourceFile(), file_);
    auto cached = texts_.find(file);
    if (cached == texts_.end()) {
      std::string text;
      int ignored = 0;
      if (!readWholeFile(file, &text, &ignored)) text.clear();
      cached = texts_.emplace(file, std::move(text)).first;
    }
    return lineOf(cached->second, static_cast<int>(node.setting.getSourceLine()));
  }

  bool failed() const { return !errors_.empty(); }

  // The messages in reading order: the main file top to bottom, then each
  // included file. Checks made after reading (references, duplicates) land
  // at their line instead of at the end.
  std::vector<std::string> messages() const {
    std::vector<Error> sorted = errors_;
    auto key = [this](const Error& e) {
      return std::make_tuple(e.where.file != file_, e.where.file, e.where.line);
    };
    std::stable_sort(sorted.begin(), sorted.end(),
                     [&](const Error& a, const Error& b) { return key(a) < key(b); });
    std::vector<std::string> messages;
    for (Error& error : sorted) messages.push_back(std::move(error.message));
    return messages;
  }

 private:
  struct Error {
    Location where;
    std::string message;
  };

  std::string file_;
  std::unordered_map<std::string, std::string> texts_;   // file name -> its text
  std::unordered_map<std::string, Location> locations_;  // setting path -> where
  std::vector<Error> errors_;
};

// ---------------------------------------------------------------------------
// Typed readers. Each one reports a wrong type or value and then leaves *out
// as it was, so that reading goes on and finds the other errors too.

const char* describe(Setting::Type type) {
  switch (type) {
    case Setting::TypeInt:
    case Setting::TypeInt64: return "an integer";
    case Setting::TypeFloat: return "a float";
    case Setting::TypeString: return "a string";
    case Setting::TypeBoolean: return "a boolean";
    case Setting::TypeGroup: return "a group { }";
    case Setting::TypeArray: return "an array [ ]";
    case Setting::TypeList: return "a list ( )";
    case Setting::TypeNone: break;
  }
  return "nothing";
}

bool expectType(Loader& loader, const Node& node, std::initializer_list<Setting::Type> allowed,
                const std::string& expected) {
  Setting::Type type = node.setting.getType();
  if (std::find(allowed.begin(), allowed.end(), type) != allowed.end()) return true;
  loader.error(node, "expected " + expected + ", got " + describe(type));
  return false;
}

bool isGroup(Loader& loader, const Node& node) {
  return expectType(loader, node, {Setting::TypeGroup}, "a group { }");
}

std::string inQuotes(const std::string& text) { return "\"" + text + "\""; }

std::string formatNumber(double value) {
  char text[64];
  snprintf(text, sizeof text, "%g", value);
  return text;
}

// An integer literal as written in a libconfig file.
struct IntegerLiteral {
  std::string text;  // with its sign, without the L suffix
  long long value = 0;
  bool is_64 = false;      // has an L suffix
  bool overflows = false;  // past even 64 bits
};

bool startsNumber(const std::string& line, size_t i) {
  auto word_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
  };
  return std::isdigit(static_cast<unsigned char>(line[i])) && (i == 0 || !word_char(line[i - 1]));
}

// Reads the number starting at line[*pos] and moves *pos past it; nullopt for
// a float.
std::optional<IntegerLiteral> integerAt(const std::string& line, size_t* pos) {
  size_t start = *pos;
  bool hex = line.compare(start, 2, "0x") == 0 || line.compare(start, 2, "0X") == 0;
  size_t first_digit = hex ? start + 2 : start;
  size_t end = first_digit;
  while (end < line.size() && (hex ? std::isxdigit(static_cast<unsigned char>(line[end]))
                                   : std::isdigit(static_cast<unsigned char>(line[end])))) {
    ++end;
  }
  *pos = end;
  if (!hex && end < line.size() && std::strchr(".eE", line[end]) != nullptr) return std::nullopt;

  bool negative = start > 0 && line[start - 1] == '-';
  std::string digits = (negative ? "-" : "") + line.substr(first_digit, end - first_digit);
  IntegerLiteral literal;
  literal.text = (negative ? "-" : "") + line.substr(start, end - start);
  literal.is_64 = end < line.size() && line[end] == 'L';
  errno = 0;
  literal.value = std::strtoll(digits.c_str(), nullptr, hex ? 16 : 10);
  literal.overflows = errno == ERANGE;
  return literal;
}

// libconfig 1.5 silently wraps an integer literal past 32 bits unless it has
// an L suffix. Finds, on the setting's line, an unsuffixed literal that does
// not fit in 32 bits and wraps to `value`.
std::optional<IntegerLiteral> wrappedLiteral(const std::string& line, int value) {
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' || line.compare(i, 2, "//") == 0) break;
    if (line[i] == '"') {  // skip the string
      while (++i < line.size() && line[i] != '"') i += line[i] == '\\' ? 1 : 0;
      continue;
    }
    if (!startsNumber(line, i)) continue;
    std::optional<IntegerLiteral> literal = integerAt(line, &i);
    if (!literal || literal->is_64) continue;
    bool fits = !literal->overflows && literal->value >= std::numeric_limits<int32_t>::min() &&
                literal->value <= std::numeric_limits<int32_t>::max();
    if (!fits && static_cast<int>(literal->value) == value) return literal;
  }
  return std::nullopt;
}

// Reports a 32-bit integer setting that libconfig wrapped (see above).
bool checkNotWrapped(Loader& loader, const Node& node) {
  if (node.setting.getType() != Setting::TypeInt) return true;
  std::optional<IntegerLiteral> literal =
      wrappedLiteral(loader.lineText(node), static_cast<int>(node.setting));
  if (!literal) return true;
  if (literal->overflows) {
    loader.error(node, literal->text + " is too large");
  } else {
    loader.error(node,
                 literal->text + " does not fit in 32 bits: write it as " + literal->text + "L");
  }
  return false;
}

void readDuration(Loader& loader, const Node& node, double* out, bool positive) {
  if (!expectType(loader, node, {Setting::TypeInt, Setting::TypeInt64, Setting::TypeFloat},
                  "a number of seconds") ||
      !checkNotWrapped(loader, node)) {
    return;
  }
  double value = 0;
  switch (node.setting.getType()) {
    case Setting::TypeInt: value = static_cast<int>(node.setting); break;
    case Setting::TypeInt64:
      value = static_cast<double>(static_cast<long long>(node.setting));
      break;
    default: value = static_cast<double>(node.setting); break;
  }
  if (!std::isfinite(value) || value < 0) {
    loader.error(node, "must not be negative (got " + formatNumber(value) + ")");
  } else if (positive && value == 0) {
    loader.error(node, "must be greater than 0");
  } else {
    *out = value;
  }
}

struct Range {
  uint64_t min = 0;
  uint64_t max = std::numeric_limits<uint64_t>::max();
  bool bounded = false;  // max was chosen for the setting, not just the type's limit
};

std::string describe(Range range, int64_t value) {
  if (range.bounded) {
    return "must be between " + std::to_string(range.min) + " and " + std::to_string(range.max);
  }
  if (value < 0 || static_cast<uint64_t>(value) < range.min) {
    return "must be at least " + std::to_string(range.min);
  }
  return "must be at most " + std::to_string(range.max);
}

template <class Int>
void readInteger(Loader& loader, const Node& node, Int* out, Range range) {
  if (!expectType(loader, node, {Setting::TypeInt, Setting::TypeInt64}, "an integer")) return;
  if (!checkNotWrapped(loader, node)) return;
  int64_t value = node.setting.getType() == Setting::TypeInt ? static_cast<int>(node.setting)
                                                             : static_cast<long long>(node.setting);
  bool in_range = value >= 0 && static_cast<uint64_t>(value) >= range.min &&
                  static_cast<uint64_t>(value) <= range.max;
  if (!in_range) {
    loader.error(node, describe(range, value) + " (got " + std::to_string(value) + ")");
    return;
  }
  *out = static_cast<Int>(value);
}

bool readString(Loader& loader, const Node& node, std::string* out) {
  if (!expectType(loader, node, {Setting::TypeString}, "a string")) return false;
  *out = static_cast<const char*>(node.setting);
  return true;
}

void readBool(Loader& loader, const Node& node, bool* out) {
  if (!expectType(loader, node, {Setting::TypeBoolean}, "a boolean (true or false)")) return;
  *out = static_cast<bool>(node.setting);
}

std::string alternatives(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) text += i + 1 == names.size() ? " or " : ", ";
    text += names[i];
  }
  return text;
}

// A string that must be one of `allowed`; returns its index or -1.
int readChoice(Loader& loader, const Node& node, const std::vector<std::string>& allowed) {
  std::string value;
  if (!readString(loader, node, &value)) return -1;
  auto found = std::find(allowed.begin(), allowed.end(), value);
  if (found != allowed.end()) return static_cast<int>(found - allowed.begin());
  loader.error(node,
               "unknown value " + inQuotes(value) + " (expected " + alternatives(allowed) + ")");
  return -1;
}

template <class Enum>
void readEnum(Loader& loader, const Node& node, Enum* out, const std::vector<Enum>& values) {
  std::vector<std::string> names;
  for (Enum value : values) names.push_back(toString(value));
  int index = readChoice(loader, node, names);
  if (index >= 0) *out = values[index];
}

enum class AddressUse { kListener, kServer, kResolver };

void readAddress(Loader& loader, const Node& node, HostPort* out, AddressUse use) {
  std::string text;
  if (!readString(loader, node, &text)) return;
  std::string why;
  std::optional<HostPort> address = parseHostPort(text, &why);
  if (!address) {
    loader.error(node, "bad address " + inQuotes(text) + ": " + why);
  } else if (use != AddressUse::kServer && !address->numeric) {
    loader.error(node, "bad address " + inQuotes(text) + ": must be a numeric IP address" +
                           (use == AddressUse::kListener ? " or \"*\"" : ""));
  } else if (use != AddressUse::kListener && address->port == 0) {
    loader.error(node, "bad address " + inQuotes(text) + ": port 0 is not allowed here");
  } else {
    *out = *address;
  }
}

// A file path; relative ones are taken from the folder of the file they are written in.
void readPath(Loader& loader, const Node& node, std::string* out, bool required) {
  std::string path;
  if (!readString(loader, node, &path)) return;
  if (path.empty()) {
    if (required) {
      loader.error(node, "must not be empty");
    } else {
      out->clear();
    }
    return;
  }
  std::filesystem::path absolute = std::filesystem::path(path).is_absolute()
                                       ? std::filesystem::path(path)
                                       : loader.baseDir(node) / path;
  *out = absolute.lexically_normal().string();
}

bool isTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool isHostNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

// ---------------------------------------------------------------------------
// Key tables.

template <class T>
using ReadFn = std::function<void(Loader&, const Node&, T&)>;

template <class T>
struct Key {
  const char* name;
  ReadFn<T> read;
  bool required = false;
};

template <class T>
using Keys = std::vector<Key<T>>;

// Reads the group `node` into `out` through `keys`. Returns false when `node`
// is not a group at all.
template <class T>
bool readGroup(Loader& loader, const Node& node, const Keys<T>& keys, T& out) {
  loader.visit(node);
  if (!isGroup(loader, node)) return false;
  for (int i = 0; i < node.size(); ++i) {
    Node child = node.child(i);
    loader.visit(child);
    auto key = std::find_if(keys.begin(), keys.end(),
                            [&](const Key<T>& k) { return child.name() == k.name; });
    if (key == keys.end()) {
      loader.error(child, "unknown setting");
    } else {
      key->read(loader, child, out);
    }
  }
  for (const Key<T>& key : keys) {
    if (key.required && !node.has(key.name)) {
      loader.error(joinPath(node.path, key.name), "missing (required)");
    }
  }
  return true;
}

// Readers of one field, to fill the tables.

// "file:line: path" of `node`, the start of a message about it.
SettingOrigin originOf(Loader& loader, const Node& node) {
  loader.visit(node);
  Location where = loader.locate(node.path);
  return where.file + ":" + std::to_string(where.line) + ": " + node.path;
}

// A field read by `read`, plus where it is written.
template <class T>
ReadFn<T> located(ReadFn<T> read, SettingOrigin T::*origin) {
  return [=](Loader& l, const Node& n, T& out) {
    read(l, n, out);
    out.*origin = originOf(l, n);
  };
}

template <class T>
ReadFn<T> duration(double T::*field, bool positive = false) {
  return [=](Loader& l, const Node& n, T& out) { readDuration(l, n, &(out.*field), positive); };
}

template <class T, class Int>
ReadFn<T> integer(Int T::*field, Range range = {}) {
  uint64_t type_max = std::numeric_limits<Int>::max();
  range.bounded = range.max < type_max;
  range.max = std::min(range.max, type_max);
  return [=](Loader& l, const Node& n, T& out) { readInteger(l, n, &(out.*field), range); };
}

template <class T>
ReadFn<T> text(std::string T::*field) {
  return [=](Loader& l, const Node& n, T& out) { readString(l, n, &(out.*field)); };
}

template <class T>
ReadFn<T> path(std::string T::*field, bool required = false) {
  return [=](Loader& l, const Node& n, T& out) { readPath(l, n, &(out.*field), required); };
}

template <class T>
ReadFn<T> flag(bool T::*field) {
  return [=](Loader& l, const Node& n, T& out) { readBool(l, n, &(out.*field)); };
}

template <class T, class Enum>
ReadFn<T> choice(Enum T::*field, std::vector<Enum> values) {
  return [=](Loader& l, const Node& n, T& out) { readEnum(l, n, &(out.*field), values); };
}

template <class T>
ReadFn<T> oneOf(std::string T::*field, std::vector<std::string> allowed) {
  return [=](Loader& l, const Node& n, T& out) {
    int index = readChoice(l, n, allowed);
    if (index >= 0) out.*field = allowed[index];
  };
}

template <class T>
ReadFn<T> address(HostPort T::*field, AddressUse use) {
  return [=](Loader& l, const Node& n, T& out) { readAddress(l, n, &(out.*field), use); };
}

// A nested group with its own struct.
template <class T, class Sub>
ReadFn<T> group(Sub T::*field, const Keys<Sub>& keys) {
  const Keys<Sub>* table = &keys;
  return [=](Loader& l, const Node& n, T& out) { readGroup(l, n, *table, out.*field); };
}

// A nested group whose settings land in the same struct (dns = { refresh }).
template <class T>
ReadFn<T> flatGroup(const Keys<T>& keys) {
  const Keys<T>* table = &keys;
  return [=](Loader& l, const Node& n, T& out) { readGroup(l, n, *table, out); };
}

template <class Element>
using ElementFn = std::function<void(Loader&, const Node&, Element&)>;

template <class Element>
ElementFn<Element> groupElement(const Keys<Element>& keys) {
  const Keys<Element>* table = &keys;
  return [=](Loader& l, const Node& n, Element& out) { readGroup(l, n, *table, out); };
}

// A list ( ) or array [ ] of elements; `required_text` non-empty means an empty
// list is an error with that message.
template <class T, class Element>
ReadFn<T> listOf(std::vector<Element> T::*field, ElementFn<Element> read_element,
                 std::string required_text = "") {
  return [=](Loader& l, const Node& n, T& out) {
    if (!expectType(l, n, {Setting::TypeList, Setting::TypeArray}, "a list ( )")) return;
    std::vector<Element>& elements = out.*field;
    elements.clear();
    for (int i = 0; i < n.size(); ++i) {
      Node child = n.child(i);
      l.visit(child);
      Element element;
      read_element(l, child, element);
      elements.push_back(std::move(element));
    }
    if (elements.empty() && !required_text.empty()) l.error(n, required_text);
  };
}

// ---------------------------------------------------------------------------
// The tables, section by section, in the order of the README's reference.

void readErrorLog(Loader& loader, const Node& node, LogConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  if (value.empty()) {
    loader.error(node, "must not be empty (a path or \"stderr\")");
  } else {
    out.error = value;
  }
}

const Keys<LogConfig>& logKeys() {
  static const Keys<LogConfig> keys = {
      {"level", choice(&LogConfig::level,
                       {LogLevel::kError, LogLevel::kWarn, LogLevel::kInfo, LogLevel::kDebug})},
      {"error", readErrorLog},
      {"access", text(&LogConfig::access)},
      {"access_format",
       choice(&LogConfig::access_format, {AccessFormat::kCombined, AccessFormat::kJson})},
  };
  return keys;
}

const Keys<CertificateConfig>& certificateKeys() {
  static const Keys<CertificateConfig> keys = {
      {"cert", located(path(&CertificateConfig::cert, true), &CertificateConfig::cert_origin), true},
      {"key", located(path(&CertificateConfig::key, true), &CertificateConfig::key_origin), true},
  };
  return keys;
}

const Keys<ListenTlsConfig>& listenTlsKeys() {
  static const Keys<ListenTlsConfig> keys = {
      {"certificates",
       listOf(&ListenTlsConfig::certificates, groupElement(certificateKeys()),
              "at least one certificate is required"),
       true},
      {"ciphers", located(text(&ListenTlsConfig::ciphers), &ListenTlsConfig::ciphers_origin)},
      {"min_version", oneOf(&ListenTlsConfig::min_version, {"TLSv1.2", "TLSv1.3"})},
      {"handshake_timeout", duration(&ListenTlsConfig::handshake_timeout, true)},
  };
  return keys;
}

void readListenTls(Loader& loader, const Node& node, ListenConfig& out) {
  ListenTlsConfig tls;
  tls.origin = originOf(loader, node);
  if (readGroup(loader, node, listenTlsKeys(), tls)) out.tls = std::move(tls);
}

const Keys<ListenConfig>& listenKeys() {
  static const Keys<ListenConfig> keys = {
      {"address", address(&ListenConfig::address, AddressUse::kListener), true},
      {"backlog", integer(&ListenConfig::backlog, {.min = 1})},
      {"defer_accept", duration(&ListenConfig::defer_accept)},
      {"nodelay", flag(&ListenConfig::nodelay)},
      {"tls", readListenTls},
  };
  return keys;
}

// admin.allow: an array [ ] or list ( ) of "ADDRESS" or "ADDRESS/PREFIX"
// strings, IPv4 or IPv6. Each bad entry is reported at its own index.
void readAdminAllow(Loader& loader, const Node& node, AdminConfig& out) {
  if (!expectType(loader, node, {Setting::TypeArray, Setting::TypeList},
                  "an array [ ] of addresses or CIDR ranges")) {
    return;
  }
  if (node.size() == 0) {
    loader.error(node, "empty: no client could use the admin listener (omit allow for loopback "
                       "only, or omit admin for no admin listener)");
    return;
  }
  std::vector<IpRange> ranges;
  bool ok = true;
  for (int i = 0; i < node.size(); ++i) {
    Node child = node.child(i);
    loader.visit(child);
    std::string text;
    if (!readString(loader, child, &text)) {
      ok = false;
      continue;
    }
    std::string why;
    std::optional<IpRange> range = parseIpRange(text, &why);
    if (!range) {
      loader.error(child, "bad address or CIDR range " + inQuotes(text) + ": " + why);
      ok = false;
      continue;
    }
    ranges.push_back(*range);
  }
  if (ok) out.allow = std::move(ranges);
}

const Keys<AdminConfig>& adminKeys() {
  static const Keys<AdminConfig> keys = {
      {"address",
       located(address(&AdminConfig::address, AddressUse::kListener), &AdminConfig::address_origin),
       true},
      {"allow", readAdminAllow},
  };
  return keys;
}

void readResolverServer(Loader& loader, const Node& node, HostPort& out) {
  readAddress(loader, node, &out, AddressUse::kResolver);
}

const Keys<ResolverConfig>& resolverKeys() {
  static const Keys<ResolverConfig> keys = {
      {"servers", listOf(&ResolverConfig::servers, ElementFn<HostPort>(readResolverServer))},
      {"timeout", duration(&ResolverConfig::timeout, true)},
  };
  return keys;
}

const Keys<TimeoutsConfig>& timeoutKeys() {
  static const Keys<TimeoutsConfig> keys = {
      {"client_header", duration(&TimeoutsConfig::client_header)},
      {"client_body", duration(&TimeoutsConfig::client_body)},
      {"client_keepalive", duration(&TimeoutsConfig::client_keepalive)},
      {"client_send", duration(&TimeoutsConfig::client_send)},
      {"upstream_connect", duration(&TimeoutsConfig::upstream_connect)},
      {"upstream_read", duration(&TimeoutsConfig::upstream_read)},
      {"upstream_send", duration(&TimeoutsConfig::upstream_send)},
  };
  return keys;
}

const Keys<LimitsConfig>& limitKeys() {
  static const Keys<LimitsConfig> keys = {
      {"max_request_line", integer(&LimitsConfig::max_request_line, {.min = 1})},
      {"max_header_bytes", integer(&LimitsConfig::max_header_bytes, {.min = 1})},
      {"max_headers", integer(&LimitsConfig::max_headers, {.min = 1})},
      {"max_body_bytes", integer(&LimitsConfig::max_body_bytes)},
  };
  return keys;
}

// A directory that exists and that we may write into: temporary files are
// opened there under load, when it is too late to say the path is wrong.
void readTempPath(Loader& loader, const Node& node, BufferingConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  struct stat info {};
  if (value.empty() || ::stat(value.c_str(), &info) != 0 || !S_ISDIR(info.st_mode) ||
      ::access(value.c_str(), W_OK | X_OK) != 0) {
    loader.error(node, inQuotes(value) + " is not a directory this process can write into");
    return;
  }
  out.temp_path = value;
}

const Keys<BufferingConfig>& bufferingKeys() {
  static const Keys<BufferingConfig> keys = {
      {"request", flag(&BufferingConfig::request)},
      {"response", flag(&BufferingConfig::response)},
      {"memory", integer(&BufferingConfig::memory)},
      {"max_temp_file", integer(&BufferingConfig::max_temp_file)},
      {"worker_memory", integer(&BufferingConfig::worker_memory)},
      {"temp_path", readTempPath},
  };
  return keys;
}

const Keys<ServerConfig>& serverKeys() {
  static const Keys<ServerConfig> keys = {
      {"address", address(&ServerConfig::address, AddressUse::kServer), true},
      {"weight", integer(&ServerConfig::weight, {.min = 1, .max = 65535})},
  };
  return keys;
}

const Keys<PoolConfig>& poolKeys() {
  static const Keys<PoolConfig> keys = {
      {"max_idle", integer(&PoolConfig::max_idle)},
      {"trim_after", duration(&PoolConfig::trim_after)},
      {"max_conns", integer(&PoolConfig::max_conns)},
      {"queue_timeout", duration(&PoolConfig::queue_timeout)},
      {"idle_timeout", duration(&PoolConfig::idle_timeout)},
      {"max_requests", integer(&PoolConfig::max_requests)},
      {"max_lifetime", duration(&PoolConfig::max_lifetime)},
  };
  return keys;
}

void readCheckPath(Loader& loader, const Node& node, HealthConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  if (!value.empty() && value[0] != '/') {
    loader.error(node, "must be \"\" or start with '/'");
  } else {
    out.check_path = value;
  }
}

const Keys<HealthConfig>& healthKeys() {
  static const Keys<HealthConfig> keys = {
      {"max_fails", integer(&HealthConfig::max_fails)},
      {"fail_timeout", duration(&HealthConfig::fail_timeout)},
      {"check_path", readCheckPath},
      {"check_interval", duration(&HealthConfig::check_interval, true)},
  };
  return keys;
}

const Keys<UpstreamTlsConfig>& upstreamTlsKeys() {
  static const Keys<UpstreamTlsConfig> keys = {
      {"enabled", flag(&UpstreamTlsConfig::enabled)},
      {"verify", flag(&UpstreamTlsConfig::verify)},
      {"ca_file", located(path(&UpstreamTlsConfig::ca_file), &UpstreamTlsConfig::ca_file_origin)},
      {"server_name", text(&UpstreamTlsConfig::server_name)},
  };
  return keys;
}

void readUpstreamTls(Loader& loader, const Node& node, UpstreamConfig& out) {
  out.tls.origin = originOf(loader, node);
  readGroup(loader, node, upstreamTlsKeys(), out.tls);
}

const Keys<UpstreamConfig>& dnsKeys() {
  static const Keys<UpstreamConfig> keys = {
      {"refresh", duration(&UpstreamConfig::dns_refresh)},
  };
  return keys;
}

// "" (only meaningful without hash), "ip" or "header:NAME".
void readHashKey(Loader& loader, const Node& node, UpstreamConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  const std::string header = "header:";
  bool is_header = value.rfind(header, 0) == 0 && value.size() > header.size() &&
                   std::all_of(value.begin() + header.size(), value.end(), isTokenChar);
  if (value.empty() || value == "ip" || is_header) {
    out.hash_key = value;
  } else {
    loader.error(node,
                 "unknown value " + inQuotes(value) + " (expected \"ip\" or \"header:NAME\")");
  }
}

// Names show in logs, /stats JSON and /metrics labels: keep them plain.
void readName(Loader& loader, const Node& node, UpstreamConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  if (value.empty()) {
    loader.error(node, "must not be empty");
  } else if (!std::all_of(value.begin(), value.end(), isHostNameChar)) {
    loader.error(node, "bad name " + inQuotes(value) + " (letters, digits, '-', '_' and '.' only)");
  } else {
    out.name = value;
  }
}

const Keys<UpstreamConfig>& upstreamKeys() {
  static const Keys<UpstreamConfig> keys = {
      {"name", readName, true},
      {"servers",
       listOf(&UpstreamConfig::servers, groupElement(serverKeys()),
              "at least one server is required"),
       true},
      {"balance", choice(&UpstreamConfig::balance, {Balance::kRoundRobin, Balance::kLeastConn,
                                                    Balance::kRandomTwo, Balance::kHash})},
      {"hash_key", readHashKey},
      {"pool", group(&UpstreamConfig::pool, poolKeys())},
      {"health", group(&UpstreamConfig::health, healthKeys())},
      {"retries", integer(&UpstreamConfig::retries)},
      {"tls", readUpstreamTls},
      {"dns", flatGroup(dnsKeys())},
  };
  return keys;
}

// True when hash_key is absent or written as "" (a wrong value written there
// has been reported by readHashKey already).
bool hashKeyLeftEmpty(const Node& upstream) {
  if (!upstream.has("hash_key")) return true;
  const Setting& key = upstream.setting["hash_key"];
  return key.getType() == Setting::TypeString && *static_cast<const char*>(key) == '\0';
}

void readUpstream(Loader& loader, const Node& node, UpstreamConfig& out) {
  if (!readGroup(loader, node, upstreamKeys(), out)) return;
  if (out.balance == Balance::kHash && hashKeyLeftEmpty(node)) {
    loader.error(joinPath(node.path, "hash_key"),
                 "required when balance is \"hash\" (\"ip\" or \"header:NAME\")");
  }
}

// "*", "*.example.com" or "example.com"; stored lowercased.
void readRouteHost(Loader& loader, const Node& node, RouteConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  std::string name = value.rfind("*.", 0) == 0 ? value.substr(2) : value;
  bool valid =
      value == "*" || (!name.empty() && std::all_of(name.begin(), name.end(), isHostNameChar));
  if (!valid) {
    loader.error(node, "bad host " + inQuotes(value) +
                           " (expected \"*\", a name, or \"*.\" followed by a name)");
    return;
  }
  std::transform(value.begin(), value.end(), value.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  out.host = value;
}

void readRoutePrefix(Loader& loader, const Node& node, RouteConfig& out) {
  std::string value;
  if (!readString(loader, node, &value)) return;
  if (value.empty() || value[0] != '/') {
    loader.error(node, "must start with '/'");
  } else {
    out.prefix = value;
  }
}

const Keys<RouteConfig>& routeKeys() {
  static const Keys<RouteConfig> keys = {
      {"host", readRouteHost},
      {"prefix", readRoutePrefix},
      {"upstream", text(&RouteConfig::upstream), true},
      {"request_buffering", flag(&RouteConfig::request_buffering)},
      {"response_buffering", flag(&RouteConfig::response_buffering)},
  };
  return keys;
}

// Present means an admin listener; absent leaves Config::admin empty.
void readAdmin(Loader& loader, const Node& node, Config& out) {
  AdminConfig admin;
  if (readGroup(loader, node, adminKeys(), admin)) out.admin = std::move(admin);
}

const Keys<Config>& topKeys() {
  static const Keys<Config> keys = {
      {"workers", integer(&Config::workers, {.min = 0, .max = kMaxWorkers})},
      {"accept_mode", choice(&Config::accept_mode,
                             {AcceptMode::kReuseport, AcceptMode::kExclusive, AcceptMode::kShared,
                              AcceptMode::kMutex, AcceptMode::kHandoff})},
      {"worker_connections", integer(&Config::worker_connections, {.min = 1})},
      {"fd_reserve", integer(&Config::fd_reserve)},
      {"max_requests_per_worker", integer(&Config::max_requests_per_worker)},
      {"shutdown_timeout", duration(&Config::shutdown_timeout)},
      {"pid_file", text(&Config::pid_file)},
      {"log", group(&Config::log, logKeys())},
      {"listen", listOf(&Config::listen, groupElement(listenKeys()),
                        "at least one listen address is required")},
      {"admin", readAdmin},
      {"resolver", group(&Config::resolver, resolverKeys())},
      {"timeouts", group(&Config::timeouts, timeoutKeys())},
      {"limits", group(&Config::limits, limitKeys())},
      {"buffering", group(&Config::buffering, bufferingKeys())},
      {"upstreams",
       listOf(&Config::upstreams, ElementFn<UpstreamConfig>(readUpstream),
              "at least one upstream is required"),
       true},
      {"routes", listOf(&Config::routes, groupElement(routeKeys()))},
  };
  return keys;
}

// ---------------------------------------------------------------------------
// Checks across sections, once everything is read.

void checkUniqueUpstreams(Loader& loader, const Config& config) {
  for (size_t i = 0; i < config.upstreams.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (!config.upstreams[i].name.empty() &&
          config.upstreams[i].name == config.upstreams[j].name) {
        std::string first = "upstreams[" + std::to_string(j) + "].name";
        loader.error("upstreams[" + std::to_string(i) + "].name",
                     "duplicate upstream name " + inQuotes(config.upstreams[i].name) +
                         " (first at line " + std::to_string(loader.locate(first).line) + ")");
        break;
      }
    }
  }
}

void checkUniqueListeners(Loader& loader, const Config& config) {
  auto same = [](const HostPort& a, const HostPort& b) {
    return a.port != 0 && a.port == b.port && a.host == b.host;
  };
  for (size_t i = 0; i < config.listen.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (same(config.listen[i].address, config.listen[j].address)) {
        loader.error("listen[" + std::to_string(i) + "].address",
                     "same address as listen[" + std::to_string(j) + "]");
        break;
      }
    }
    if (config.admin && same(config.admin->address, config.listen[i].address)) {
      loader.error("admin.address", "same address as listen[" + std::to_string(i) + "]");
    }
  }
}

void resolveRoutes(Loader& loader, const Node& root, Config& config) {
  if (config.upstreams.empty()) return;  // reported already
  if (config.routes.empty()) {
    if (config.upstreams.size() == 1) {
      RouteConfig catch_all;  // host "*", prefix "/"
      catch_all.upstream = config.upstreams[0].name;
      config.routes.push_back(std::move(catch_all));
    } else {
      loader.error(root.has("routes") ? "routes" : "upstreams",
                   "routes are required when there is more than one upstream");
    }
    return;
  }
  for (size_t i = 0; i < config.routes.size(); ++i) {
    RouteConfig& route = config.routes[i];
    if (route.upstream.empty()) continue;  // reported already
    auto found = std::find_if(config.upstreams.begin(), config.upstreams.end(),
                              [&](const UpstreamConfig& u) { return u.name == route.upstream; });
    if (found == config.upstreams.end()) {
      loader.error("routes[" + std::to_string(i) + "].upstream",
                   "no upstream named " + inQuotes(route.upstream));
    } else {
      route.upstream_index = static_cast<size_t>(found - config.upstreams.begin());
    }
  }
}

Config buildConfig(Loader& loader, const Node& root) {
  Config config;
  readGroup(loader, root, topKeys(), config);
  if (!root.has("listen")) config.listen = defaultConfig().listen;
  checkUniqueUpstreams(loader, config);
  checkUniqueListeners(loader, config);
  resolveRoutes(loader, root, config);
  return config;
}

// ---------------------------------------------------------------------------
// Parsing.

std::string syntaxMessage(const libconfig::ParseException& e, const std::string& text,
                          const std::string& name) {
  std::string file = sourceName(e.getFile(), name);
  bool in_text = file == name;
  std::string detail = e.getError() != nullptr ? e.getError() : "";
  if (detail.empty() || detail == "syntax error") {
    std::string near = in_text ? lineOf(text, e.getLine()) : "";
    detail = near.empty() ? "unexpected input" : "near " + inQuotes(near);
  }
  return file + ":" + std::to_string(e.getLine()) + ": syntax error: " + detail;
}

Config parseAndBuild(const std::string& text, const std::string& name) {
  libconfig::Config parsed;
  std::string include_dir = Loader::folderOf(name).string();
  parsed.setIncludeDir(include_dir.c_str());
  try {
    parsed.readString(text);
  } catch (const libconfig::ParseException& e) {
    throw ConfigError({syntaxMessage(e, text, name)});
  }
  Loader loader(name, text);
  Config config = buildConfig(loader, Node{parsed.getRoot(), ""});
  if (loader.failed()) throw ConfigError(loader.messages());
  config.source_file = name;
  return config;
}

}  // namespace

Config loadConfigText(const std::string& text, const std::string& name) {
  try {
    return parseAndBuild(text, name);
  } catch (const ConfigError&) {
    throw;
  } catch (const libconfig::ConfigException& e) {
    throw ConfigError({name + ": " + e.what()});
  } catch (const std::exception& e) {
    throw ConfigError({name + ": " + e.what()});
  }
}

Config loadConfigFile(const std::string& path) {
  std::string text;
  int error = 0;
  if (!readWholeFile(path, &text, &error)) {
    throw ConfigError({path + ": cannot read: " + std::strerror(error)});
  }
  return loadConfigText(text, path);
}

}  // namespace poolgate
