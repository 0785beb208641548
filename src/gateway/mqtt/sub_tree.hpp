#pragma once
// The broker's two topic indexes, free of sockets:
//  - SubTree: every subscription (filter -> subscribers), a trie by topic level, for finding
//    who receives a PUBLISH;
//  - RetainedTree<T>: the retained message of each topic name, a trie by topic level, for
//    finding what a new SUBSCRIBE receives.
// Neither is thread-safe; the broker serializes access (or keeps one per shard). Matching never
// allocates per level (string_view levels, transparent hash lookup, an inline DFS stack), and
// every traversal (and destruction) is iterative: a topic may have 65536 levels ("/////...")
// without exhausting a thread's stack.
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gateway/mqtt/topic.hpp"

namespace converge::mqtt {

// Whoever holds subscriptions: the broker's session handle.
using SubscriberId = std::uint64_t;

// The options of one subscription (MQTT 5 SUBSCRIBE options; 3.1.1 uses only qos).
struct SubOptions {
  std::uint8_t qos = 0;               // maximum QoS granted, 0-2
  bool no_local = false;              // do not deliver the subscriber's own publishes
  bool retain_as_published = false;   // keep the RETAIN flag on delivery
  std::uint8_t retain_handling = 0;   // 0 send retained, 1 only if new, 2 never
  std::uint32_t subscription_id = 0;  // MQTT 5 Subscription Identifier, 0 = none
  bool operator==(const SubOptions&) const = default;
};

struct SubEntry {
  SubscriberId id = 0;
  SubOptions options;
};

namespace detail {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

template <class V>
using LevelMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// A LIFO stack for depth-first walks: 64 frames inline, the rest on the heap.
template <class F>
class DfsStack {
 public:
  void push(const F& f) {
    if (n_ < inline_.size()) {
      inline_[n_++] = f;
    } else {
      more_.push_back(f);
    }
  }
  bool pop(F& out) {
    if (!more_.empty()) {
      out = more_.back();
      more_.pop_back();
      return true;
    }
    if (n_ == 0) return false;
    out = inline_[--n_];
    return true;
  }

 private:
  std::array<F, 64> inline_{};
  std::size_t n_ = 0;
  std::vector<F> more_;
};

// The level of `s` starting at `pos` and where the next one starts (npos: it was the last).
inline std::string_view level_at(std::string_view s, std::size_t pos, std::size_t& next) {
  std::size_t slash = s.find('/', pos);
  if (slash == std::string_view::npos) {
    next = std::string_view::npos;
    return s.substr(pos);
  }
  next = slash + 1;
  return s.substr(pos, slash - pos);
}

}  // namespace detail

// Subscriptions by filter. A subscriber has at most one subscription per filter string
// (re-subscribing replaces the options, MQTT 5 section 3.8.4); overlapping filters of one
// subscriber are separate subscriptions and `match` reports each of them, so the broker can
// deliver once with the maximum QoS and every Subscription Identifier (MQTT 5 section 3.3.4).
//
// Shared subscriptions "$share/<group>/<filter>" are stored under <filter> by group: `match`
// reports each matching (group, filter) once with all its members, and the broker picks one.
class SubTree {
 public:
  enum class Insert { added, replaced, invalid };

  SubTree();
  ~SubTree();
  SubTree(SubTree&&) noexcept;
  SubTree& operator=(SubTree&&) noexcept;
  SubTree(const SubTree&) = delete;
  SubTree& operator=(const SubTree&) = delete;

  // Subscribes `id` to `filter` (a valid topic filter, or a well-formed "$share/g/f"):
  // `added`, or `replaced` when `id` had that exact filter (its options are now `options`;
  // MQTT 5 retain_handling 1 tells the two apart), or `invalid` (nothing changed).
  Insert insert(std::string_view filter, SubscriberId id, const SubOptions& options);

  // Removes the subscription of `id` to exactly `filter` (same spelling as subscribed, shared
  // ones with their "$share/g/" prefix); true if there was one. Nodes left empty are freed.
  bool erase(std::string_view filter, SubscriberId id);

  // The options of `id`'s subscription to exactly `filter`, or null.
  const SubOptions* find(std::string_view filter, SubscriberId id) const;

  // Visits every subscription whose filter matches `topic` (a valid topic name):
  //   on_sub(SubscriberId id, const SubOptions& options, std::string_view filter)
  //     for each ordinary subscription (one subscriber may be visited several times, once per
  //     overlapping filter);
  //   on_group(std::string_view group, std::string_view filter, std::span<const SubEntry> members)
  //     once per matching shared subscription (`filter` without "$share/<group>/"; members
  //     non-empty, in no particular order).
  // Order is unspecified. The callbacks must not modify the tree.
  template <class OnSub, class OnGroup>
  void match(std::string_view topic, OnSub&& on_sub, OnGroup&& on_group) const {
    auto sub_thunk = [](void* ctx, SubscriberId id, const SubOptions& o, std::string_view f) {
      (*static_cast<std::remove_reference_t<OnSub>*>(ctx))(id, o, f);
    };
    auto group_thunk = [](void* ctx, std::string_view g, std::string_view f,
                          std::span<const SubEntry> m) {
      (*static_cast<std::remove_reference_t<OnGroup>*>(ctx))(g, f, m);
    };
    match_impl(topic, const_cast<void*>(static_cast<const void*>(&on_sub)), sub_thunk,
               const_cast<void*>(static_cast<const void*>(&on_group)), group_thunk);
  }

  // Subscriptions held (each shared member counts one).
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Trie nodes besides the root (for tests and metrics: 0 once everything is erased).
  std::size_t node_count() const { return nodes_; }

 private:
  struct Node;
  using SubFn = void (*)(void*, SubscriberId, const SubOptions&, std::string_view);
  using GroupFn = void (*)(void*, std::string_view, std::string_view, std::span<const SubEntry>);
  void match_impl(std::string_view topic, void* sub_ctx, SubFn sub_fn, void* group_ctx,
                  GroupFn group_fn) const;
  Node* find_node(std::string_view filter) const;
  void prune(Node* n);

  std::unique_ptr<Node> root_;
  std::size_t size_ = 0;
  std::size_t nodes_ = 0;
};

// Retained messages by topic name: at most one value per topic (a retained PUBLISH replaces it,
// an empty retained payload erases it: the broker's decision, this only stores).
// T is the broker's retained message (payload, QoS, properties, expiry...).
template <class T>
class RetainedTree {
 public:
  RetainedTree() : root_(std::make_unique<Node>()) {}
  ~RetainedTree() { clear(); }
  RetainedTree(RetainedTree&& o) noexcept
      : root_(std::exchange(o.root_, std::make_unique<Node>())), size_(std::exchange(o.size_, 0)) {}
  RetainedTree& operator=(RetainedTree&& o) noexcept {
    if (this != &o) {
      clear();
      root_ = std::move(o.root_);
      size_ = std::exchange(o.size_, 0);
      o.root_ = std::make_unique<Node>();
    }
    return *this;
  }
  RetainedTree(const RetainedTree&) = delete;
  RetainedTree& operator=(const RetainedTree&) = delete;

  // Stores `value` as the retained message of `topic` (a valid topic name, else false and no
  // change); true when the topic had none before, false when it replaced one.
  bool set(std::string_view topic, T value) {
    if (!valid_topic_name(topic)) return false;
    Node* n = root_.get();
    std::size_t pos = 0;
    while (pos != std::string_view::npos) {
      std::size_t next;
      std::string_view level = detail::level_at(topic, pos, next);
      auto it = n->children.find(level);
      if (it == n->children.end()) {
        auto child = std::make_unique<Node>();
        child->parent = n;
        it = n->children.emplace(std::string(level), std::move(child)).first;
        it->second->key = it->first;
      }
      n = it->second.get();
      pos = next;
    }
    bool added = !n->value.has_value();
    n->value.emplace(std::move(value));
    if (added) {
      n->topic = std::string(topic);
      ++size_;
    }
    return added;
  }

  // Removes the retained message of `topic`; true if there was one. Empty nodes are freed.
  bool erase(std::string_view topic) {
    Node* n = find_node(topic);
    if (n == nullptr || !n->value) return false;
    n->value.reset();
    n->topic = std::string();
    --size_;
    while (n != root_.get() && !n->value && n->children.empty()) {
      Node* parent = n->parent;
      parent->children.erase(parent->children.find(n->key));
      n = parent;
    }
    return true;
  }

  // The retained message of exactly `topic`, or null.
  const T* find(std::string_view topic) const {
    Node* n = find_node(topic);
    return n != nullptr && n->value ? &*n->value : nullptr;
  }
  T* find(std::string_view topic) {
    Node* n = find_node(topic);
    return n != nullptr && n->value ? &*n->value : nullptr;
  }

  // Visits visit(std::string_view topic, const T& value) for every retained topic that `filter`
  // (a valid topic filter, not "$share/...": the caller strips that) matches, with the `$`
  // rule. "#" and "a/#" walk the subtree without lookups. Order is unspecified; `visit` must
  // not modify the tree.
  template <class F>
  void match(std::string_view filter, F&& visit) const {
    if (!valid_topic_filter(filter)) return;
    struct Frame {
      const Node* n;
      std::size_t pos;  // start of the next filter level; npos when all were consumed
    };
    detail::DfsStack<Frame> stack;
    stack.push({root_.get(), 0});
    Frame f;
    while (stack.pop(f)) {
      if (f.pos == std::string_view::npos) {
        if (f.n->value) visit(std::string_view(f.n->topic), *f.n->value);
        continue;
      }
      std::size_t next;
      std::string_view level = detail::level_at(filter, f.pos, next);
      const bool at_root = f.n == root_.get();
      if (level == "#") {
        if (f.n->value) visit(std::string_view(f.n->topic), *f.n->value);  // "a/#" ~ "a"
        for (const auto& [key, child] : f.n->children) {
          if (at_root && key.starts_with('$')) continue;
          walk(child.get(), visit);
        }
      } else if (level == "+") {
        for (const auto& [key, child] : f.n->children) {
          if (at_root && key.starts_with('$')) continue;
          stack.push({child.get(), next});
        }
      } else {
        auto it = f.n->children.find(level);
        if (it != f.n->children.end()) stack.push({it->second.get(), next});
      }
    }
  }

  // Visits every retained message (persistence, expiry sweeps), as visit(topic, const T&).
  template <class F>
  void for_each(F&& visit) const {
    walk(root_.get(), visit);
  }

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  void clear() {
    if (!root_) return;
    std::vector<std::unique_ptr<Node>> pending;  // iterative: deep chains must not recurse
    for (auto& [key, child] : root_->children) pending.push_back(std::move(child));
    root_->children.clear();
    while (!pending.empty()) {
      std::unique_ptr<Node> n = std::move(pending.back());
      pending.pop_back();
      for (auto& [key, child] : n->children) pending.push_back(std::move(child));
    }
    size_ = 0;
  }

 private:
  struct Node {
    Node* parent = nullptr;
    std::string_view key;  // this node's level (its key in parent->children)
    detail::LevelMap<std::unique_ptr<Node>> children;
    std::optional<T> value;
    std::string topic;  // the full topic name, while `value` is set
  };

  Node* find_node(std::string_view topic) const {
    if (topic.empty()) return nullptr;
    Node* n = root_.get();
    std::size_t pos = 0;
    while (pos != std::string_view::npos) {
      std::size_t next;
      auto it = n->children.find(detail::level_at(topic, pos, next));
      if (it == n->children.end()) return nullptr;
      n = it->second.get();
      pos = next;
    }
    return n;
  }

  template <class F>
  static void walk(const Node* top, F& visit) {
    detail::DfsStack<const Node*> stack;
    stack.push(top);
    const Node* n;
    while (stack.pop(n)) {
      if (n->value) visit(std::string_view(n->topic), *n->value);
      for (const auto& [key, child] : n->children) stack.push(child.get());
    }
  }

  std::unique_ptr<Node> root_;
  std::size_t size_ = 0;
};

}  // namespace converge::mqtt
