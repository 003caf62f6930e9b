// The generic machinery of the config loader (config_loader.cc): settings
// with their paths (Node), where they are written (Loader), typed readers
// that report a wrong type or value, and the Keys tables a group is read
// through. Private to config/: nothing outside it includes this header.
//
// Every group is read through a table of its known keys: a setting whose name
// is not in the table is an error, a known one is handed to a typed reader that
// checks its type and range. Errors are collected, each located as
// "file:line: path: what", and thrown together as one ConfigError once the
// whole file has been read. Paths read like C++: "upstreams[0].pool.max_idle".
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <libconfig.h++>
#include <limits>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.h"

namespace poolgate::config_internal {

using libconfig::Setting;

// ---------------------------------------------------------------------------
// Files and lines.

// The file a setting was read from, as libconfig recorded it: nullptr for the
// main text, or an @include name as written, which is relative to the main
// file's folder (the include dir).
std::string sourceName(const char* recorded, const std::string& main_file);

// The trimmed text of line `number` (1-based) of `text`, or "".
std::string lineOf(const std::string& text, int number);

// Reads all of `path` into *out; on failure sets *error to the errno.
bool readWholeFile(const std::string& path, std::string* out, int* error);

// ---------------------------------------------------------------------------
// Where settings are, and the errors about them.

std::string joinPath(const std::string& parent, const std::string& name);

// "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a" -> "".
std::string parentPath(const std::string& path);

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
  Loader(std::string file, const std::string& text);

  // Remembers where `node` is written, for messages about it or its children.
  void visit(const Node& node);

  void error(const Node& node, const std::string& what);

  // `path` need not exist in the file (a missing setting): the message then
  // carries the line of its nearest ancestor that does.
  void error(const std::string& path, const std::string& what);

  Location locate(std::string path) const;

  // The folder relative paths written at `node` are taken from.
  std::filesystem::path baseDir(const Node& node) const;

  static std::filesystem::path folderOf(const std::string& file);

  // The text of the line `node` is written on ("" when unknown).
  std::string lineText(const Node& node);

  bool failed() const { return !errors_.empty(); }

  // The messages in reading order: the main file top to bottom, then each
  // included file. Checks made after reading (references, duplicates) land
  // at their line instead of at the end.
  std::vector<std::string> messages() const;

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

bool expectType(Loader& loader, const Node& node, std::initializer_list<Setting::Type> allowed,
                const std::string& expected);

bool isGroup(Loader& loader, const Node& node);

std::string inQuotes(const std::string& text);

// Reports a 32-bit integer setting that libconfig 1.5 silently wrapped: an
// integer literal past 32 bits written without an L suffix.
bool checkNotWrapped(Loader& loader, const Node& node);

void readDuration(Loader& loader, const Node& node, double* out, bool positive);

struct Range {
  uint64_t min = 0;
  uint64_t max = std::numeric_limits<uint64_t>::max();
  bool bounded = false;  // max was chosen for the setting, not just the type's limit
};

// "must be between ...", "must be at least ..." or "must be at most ...".
std::string describe(Range range, int64_t value);

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

bool readString(Loader& loader, const Node& node, std::string* out);

void readBool(Loader& loader, const Node& node, bool* out);

// A string that must be one of `allowed`; returns its index or -1.
int readChoice(Loader& loader, const Node& node, const std::vector<std::string>& allowed);

template <class Enum>
void readEnum(Loader& loader, const Node& node, Enum* out, const std::vector<Enum>& values) {
  std::vector<std::string> names;
  for (Enum value : values) names.push_back(toString(value));
  int index = readChoice(loader, node, names);
  if (index >= 0) *out = values[index];
}

// Listeners: a numeric IP or "*", port 0 allowed. Servers: names too, no
// port 0. Resolvers: a numeric IP, no port 0.
enum class AddressUse { kListener, kServer, kResolver };

void readAddress(Loader& loader, const Node& node, HostPort* out, AddressUse use);

// A file path; relative ones are taken from the folder of the file they are written in.
void readPath(Loader& loader, const Node& node, std::string* out, bool required);

bool isTokenChar(char c);

bool isHostNameChar(char c);

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
SettingOrigin originOf(Loader& loader, const Node& node);

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
}  // namespace poolgate::config_internal
