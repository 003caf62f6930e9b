// The config loader's generic machinery: see config_reader.h.
#include "config/config_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <tuple>

namespace poolgate::config_internal {

// ---------------------------------------------------------------------------
// Files and lines.

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

std::string parentPath(const std::string& path) {
  size_t cut = path.back() == ']' ? path.rfind('[') : path.rfind('.');
  return cut == std::string::npos ? std::string() : path.substr(0, cut);
}

Loader::Loader(std::string file, const std::string& text) : file_(std::move(file)) {
  texts_[file_] = text;
}

void Loader::visit(const Node& node) {
  unsigned line = node.setting.getSourceLine();
  locations_[node.path] =
      Location{sourceName(node.setting.getSourceFile(), file_), line == 0 ? 1 : line};
}

void Loader::error(const Node& node, const std::string& what) {
  visit(node);
  error(node.path, what);
}

void Loader::error(const std::string& path, const std::string& what) {
  Location where = locate(path);
  std::string prefix = where.file + ":" + std::to_string(where.line) + ": ";
  errors_.push_back({where, prefix + (path.empty() ? "" : path + ": ") + what});
}

Location Loader::locate(std::string path) const {
  while (true) {
    auto found = locations_.find(path);
    if (found != locations_.end()) return found->second;
    if (path.empty()) return Location{file_, 1};
    path = parentPath(path);
  }
}

std::filesystem::path Loader::baseDir(const Node& node) const {
  return folderOf(sourceName(node.setting.getSourceFile(), file_));
}

std::filesystem::path Loader::folderOf(const std::string& file) {
  std::error_code ignored;
  std::filesystem::path absolute = std::filesystem::absolute(file, ignored);
  if (absolute.empty()) absolute = file;
  return absolute.parent_path();
}

std::string Loader::lineText(const Node& node) {
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

std::vector<std::string> Loader::messages() const {
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

// ---------------------------------------------------------------------------
// Typed readers. Each one reports a wrong type or value and then leaves *out
// as it was, so that reading goes on and finds the other errors too.

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

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

std::string describe(Range range, int64_t value) {
  if (range.bounded) {
    return "must be between " + std::to_string(range.min) + " and " + std::to_string(range.max);
  }
  if (value < 0 || static_cast<uint64_t>(value) < range.min) {
    return "must be at least " + std::to_string(range.min);
  }
  return "must be at most " + std::to_string(range.max);
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

namespace {

std::string alternatives(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) text += i + 1 == names.size() ? " or " : ", ";
    text += names[i];
  }
  return text;
}

}  // namespace

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

// "file:line: path" of `node`, the start of a message about it.
SettingOrigin originOf(Loader& loader, const Node& node) {
  loader.visit(node);
  Location where = loader.locate(node.path);
  return where.file + ":" + std::to_string(where.line) + ": " + node.path;
}

}  // namespace poolgate::config_internal
