#include "gateway/mqtt/sub_tree.hpp"

#include <algorithm>

namespace converge::mqtt {

namespace {

// The subscribers of one filter (or the members of one share group): a vector for fast
// iteration, plus an index by id once it is large enough that a linear search would hurt.
class Entries {
 public:
  SubEntry* find(SubscriberId id) {
    if (!index_.empty()) {
      auto it = index_.find(id);
      return it == index_.end() ? nullptr : &v_[it->second];
    }
    for (auto& e : v_)
      if (e.id == id) return &e;
    return nullptr;
  }
  // True when added, false when `id` was there (its options replaced).
  bool upsert(SubscriberId id, const SubOptions& o) {
    if (SubEntry* e = find(id)) {
      e->options = o;
      return false;
    }
    v_.push_back(SubEntry{id, o});
    if (!index_.empty()) {
      index_.emplace(id, v_.size() - 1);
    } else if (v_.size() > kIndexAt) {
      for (std::size_t i = 0; i < v_.size(); ++i) index_.emplace(v_[i].id, i);
    }
    return true;
  }
  bool erase(SubscriberId id) {
    SubEntry* e = find(id);
    if (e == nullptr) return false;
    std::size_t i = static_cast<std::size_t>(e - v_.data());
    if (!index_.empty()) index_.erase(id);
    if (i + 1 != v_.size()) {
      v_[i] = v_.back();
      if (!index_.empty()) index_[v_[i].id] = i;
    }
    v_.pop_back();
    if (v_.size() <= kIndexAt / 2) index_.clear();
    return true;
  }
  std::span<const SubEntry> all() const { return v_; }
  bool empty() const { return v_.empty(); }

 private:
  static constexpr std::size_t kIndexAt = 16;
  std::vector<SubEntry> v_;
  std::unordered_map<SubscriberId, std::size_t> index_;
};

struct Group {
  std::string name;
  Entries members;
};

}  // namespace

struct SubTree::Node {
  Node* parent = nullptr;
  std::string_view key;  // this node's level: its key in parent->children, or "+" / "#"
  detail::LevelMap<std::unique_ptr<Node>> children;
  std::unique_ptr<Node> plus;  // the "+" child
  std::unique_ptr<Node> hash;  // the "#" child (always a leaf)
  std::string filter;          // the filter spelled by the path, once someone subscribed here
  Entries subs;
  std::vector<Group> groups;  // shared subscriptions to this filter, by group name

  bool unused() const {
    return subs.empty() && groups.empty() && children.empty() && !plus && !hash;
  }
  Group* group(std::string_view name) {
    for (auto& g : groups)
      if (g.name == name) return &g;
    return nullptr;
  }
};

SubTree::SubTree() : root_(std::make_unique<Node>()) {}

SubTree::~SubTree() {
  if (!root_) return;
  // Iterative teardown: a chain of 65536 nodes must not recurse through unique_ptr destructors.
  std::vector<std::unique_ptr<Node>> pending;
  pending.push_back(std::move(root_));
  while (!pending.empty()) {
    std::unique_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    for (auto& [key, child] : n->children) pending.push_back(std::move(child));
    if (n->plus) pending.push_back(std::move(n->plus));
    if (n->hash) pending.push_back(std::move(n->hash));
  }
}

SubTree::SubTree(SubTree&& o) noexcept
    : root_(std::exchange(o.root_, std::make_unique<Node>())),
      size_(std::exchange(o.size_, 0)),
      nodes_(std::exchange(o.nodes_, 0)) {}

SubTree& SubTree::operator=(SubTree&& o) noexcept {
  if (this != &o) {
    SubTree old(std::move(*this));
    root_ = std::exchange(o.root_, std::make_unique<Node>());
    size_ = std::exchange(o.size_, 0);
    nodes_ = std::exchange(o.nodes_, 0);
  }
  return *this;
}

SubTree::Insert SubTree::insert(std::string_view filter, SubscriberId id,
                                const SubOptions& options) {
  std::optional<SharedFilter> shared;
  std::string_view path = filter;
  if (is_shared(filter)) {
    shared = parse_shared(filter);
    if (!shared) return Insert::invalid;
    path = shared->filter;
  } else if (!valid_topic_filter(filter)) {
    return Insert::invalid;
  }

  Node* n = root_.get();
  std::size_t pos = 0;
  while (pos != std::string_view::npos) {
    std::size_t next;
    std::string_view level = detail::level_at(path, pos, next);
    std::unique_ptr<Node>* slot;
    if (level == "+" || level == "#") {
      slot = level == "+" ? &n->plus : &n->hash;
      if (!*slot) {
        auto child = std::make_unique<Node>();
        child->parent = n;
        child->key = level == "+" ? std::string_view("+") : std::string_view("#");
        *slot = std::move(child);
        ++nodes_;
      }
    } else {
      auto it = n->children.find(level);
      if (it == n->children.end()) {
        auto child = std::make_unique<Node>();
        child->parent = n;
        it = n->children.emplace(std::string(level), std::move(child)).first;
        it->second->key = it->first;
        ++nodes_;
      }
      slot = &it->second;
    }
    n = slot->get();
    pos = next;
  }
  if (n->filter.empty()) n->filter = std::string(path);

  bool added;
  if (shared) {
    Group* g = n->group(shared->group);
    if (g == nullptr) g = &n->groups.emplace_back(Group{std::move(shared->group), {}});
    added = g->members.upsert(id, options);
  } else {
    added = n->subs.upsert(id, options);
  }
  if (added) ++size_;
  return added ? Insert::added : Insert::replaced;
}

SubTree::Node* SubTree::find_node(std::string_view path) const {
  Node* n = root_.get();
  std::size_t pos = 0;
  while (pos != std::string_view::npos && n != nullptr) {
    std::size_t next;
    std::string_view level = detail::level_at(path, pos, next);
    if (level == "+") {
      n = n->plus.get();
    } else if (level == "#") {
      n = n->hash.get();
    } else {
      auto it = n->children.find(level);
      n = it == n->children.end() ? nullptr : it->second.get();
    }
    pos = next;
  }
  return n;
}

const SubOptions* SubTree::find(std::string_view filter, SubscriberId id) const {
  if (filter.empty()) return nullptr;
  if (is_shared(filter)) {
    auto shared = parse_shared(filter);
    if (!shared) return nullptr;
    Node* n = find_node(shared->filter);
    Group* g = n != nullptr ? n->group(shared->group) : nullptr;
    SubEntry* e = g != nullptr ? g->members.find(id) : nullptr;
    return e != nullptr ? &e->options : nullptr;
  }
  Node* n = find_node(filter);
  SubEntry* e = n != nullptr ? n->subs.find(id) : nullptr;
  return e != nullptr ? &e->options : nullptr;
}

bool SubTree::erase(std::string_view filter, SubscriberId id) {
  if (filter.empty()) return false;
  Node* n;
  bool removed = false;
  if (is_shared(filter)) {
    auto shared = parse_shared(filter);
    if (!shared) return false;
    n = find_node(shared->filter);
    if (n == nullptr) return false;
    auto g = std::find_if(n->groups.begin(), n->groups.end(),
                          [&](const Group& x) { return x.name == shared->group; });
    if (g == n->groups.end()) return false;
    removed = g->members.erase(id);
    if (g->members.empty()) n->groups.erase(g);
  } else {
    n = find_node(filter);
    if (n == nullptr) return false;
    removed = n->subs.erase(id);
  }
  if (!removed) return false;
  --size_;
  prune(n);
  return true;
}

void SubTree::prune(Node* n) {
  while (n != root_.get() && n->unused()) {
    Node* parent = n->parent;
    if (n == parent->plus.get()) {
      parent->plus.reset();
    } else if (n == parent->hash.get()) {
      parent->hash.reset();
    } else {
      parent->children.erase(parent->children.find(n->key));
    }
    --nodes_;
    n = parent;
  }
  if (n != root_.get() && n->subs.empty() && n->groups.empty()) n->filter = std::string();
}

void SubTree::match_impl(std::string_view topic, void* sub_ctx, SubFn sub_fn, void* group_ctx,
                         GroupFn group_fn) const {
  if (topic.empty()) return;
  auto report = [&](const Node* n) {
    for (const SubEntry& e : n->subs.all()) sub_fn(sub_ctx, e.id, e.options, n->filter);
    for (const Group& g : n->groups) group_fn(group_ctx, g.name, n->filter, g.members.all());
  };
  struct Frame {
    const Node* n;
    std::size_t pos;  // start of the next topic level; npos when all were consumed
  };
  const bool dollar = topic[0] == '$';
  detail::DfsStack<Frame> stack;
  stack.push({root_.get(), 0});
  Frame f;
  while (stack.pop(f)) {
    if (f.pos == std::string_view::npos) {
      report(f.n);
      if (f.n->hash) report(f.n->hash.get());  // "sport/#" matches "sport"
      continue;
    }
    std::size_t next;
    std::string_view level = detail::level_at(topic, f.pos, next);
    const bool wild = !(dollar && f.n == root_.get());  // "$SYS/x" escapes "#" and "+/x"
    if (wild && f.n->hash) report(f.n->hash.get());
    if (wild && f.n->plus) stack.push({f.n->plus.get(), next});
    auto it = f.n->children.find(level);
    if (it != f.n->children.end()) stack.push({it->second.get(), next});
  }
}

}  // namespace converge::mqtt
