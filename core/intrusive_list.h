// An unordered intrusive list: the links live in the objects, so putting an
// object on a list or taking it off allocates nothing and costs O(1), and
// one object can be on several lists (one ListLink member each).
//
//   struct Stream { ListLink<Stream> ready; ... };
//   Stream* ready_ = nullptr;
//   listPush(ready_, stream, &Stream::ready);    // no-op when already on it
//   listUnlink(ready_, stream, &Stream::ready);  // no-op when not on it
#pragma once

namespace poolgate {

template <class T>
struct ListLink {
  T* prev = nullptr;
  T* next = nullptr;
  bool linked = false;
};

template <class T>
void listPush(T*& head, T& node, ListLink<T> T::*link) {
  ListLink<T>& l = node.*link;
  if (l.linked) return;
  l.linked = true;
  l.prev = nullptr;
  l.next = head;
  if (head != nullptr) ((*head).*link).prev = &node;
  head = &node;
}

template <class T>
void listUnlink(T*& head, T& node, ListLink<T> T::*link) {
  ListLink<T>& l = node.*link;
  if (!l.linked) return;
  if (l.prev != nullptr) ((*l.prev).*link).next = l.next; else head = l.next;
  if (l.next != nullptr) ((*l.next).*link).prev = l.prev;
  l.prev = l.next = nullptr;
  l.linked = false;
}

}  // namespace poolgate
