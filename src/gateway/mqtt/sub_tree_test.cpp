#include "gateway/mqtt/sub_tree.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

using namespace converge::mqtt;

namespace {

using Hit = std::tuple<SubscriberId, std::string>;  // (subscriber, filter)

struct Matches {
  std::multiset<Hit> subs;
  std::map<std::pair<std::string, std::string>, std::set<SubscriberId>> groups;
};

Matches match(const SubTree& t, std::string_view topic) {
  Matches m;
  t.match(
      topic,
      [&](SubscriberId id, const SubOptions&, std::string_view f) {
        m.subs.emplace(id, std::string(f));
      },
      [&](std::string_view g, std::string_view f, std::span<const SubEntry> members) {
        auto& set = m.groups[{std::string(g), std::string(f)}];
        EXPECT_TRUE(set.empty()) << "group reported twice: " << g << " " << f;
        for (const auto& e : members) set.insert(e.id);
      });
  return m;
}

std::multiset<Hit> subs(std::initializer_list<Hit> l) {
  return std::multiset<Hit>(l);
}

SubOptions qos(uint8_t q, uint32_t sub_id = 0) {
  SubOptions o;
  o.qos = q;
  o.subscription_id = sub_id;
  return o;
}

TEST(SubTree, InsertReplaceInvalid) {
  SubTree t;
  EXPECT_EQ(t.insert("a/b", 1, qos(0)), SubTree::Insert::added);
  EXPECT_EQ(t.insert("a/b", 1, qos(2)), SubTree::Insert::replaced);
  ASSERT_NE(t.find("a/b", 1), nullptr);
  EXPECT_EQ(t.find("a/b", 1)->qos, 2);
  EXPECT_EQ(t.find("a/b", 2), nullptr);
  EXPECT_EQ(t.find("a/+", 1), nullptr);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.insert("a/#/b", 1, qos(0)), SubTree::Insert::invalid);
  EXPECT_EQ(t.insert("", 1, qos(0)), SubTree::Insert::invalid);
  EXPECT_EQ(t.insert("a+", 1, qos(0)), SubTree::Insert::invalid);
  EXPECT_EQ(t.insert("$share/g", 1, qos(0)), SubTree::Insert::invalid);
  EXPECT_EQ(t.insert("$share/g+/x", 1, qos(0)), SubTree::Insert::invalid);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.node_count(), 2u);
}

TEST(SubTree, SpecMatching) {
  SubTree t;
  const char* filters[] = {"sport/tennis/player1/#",
                           "sport/#",
                           "#",
                           "sport/tennis/+",
                           "sport/+",
                           "+/+",
                           "/+",
                           "+",
                           "+/tennis/#",
                           "$SYS/#",
                           "$SYS/monitor/+",
                           "+/monitor/Clients",
                           "sport/tennis/player1"};
  SubscriberId id = 1;
  for (const char* f : filters) ASSERT_EQ(t.insert(f, id++, {}), SubTree::Insert::added) << f;

  // Every (filter, topic) pair agrees with topic_matches.
  const char* topics[] = {"sport",
                          "sport/",
                          "sport/tennis",
                          "sport/tennis/player1",
                          "sport/tennis/player1/ranking",
                          "sport/tennis/player1/score/wimbledon",
                          "sport/tennis/player2",
                          "/finance",
                          "finance",
                          "/",
                          "$SYS/monitor/Clients",
                          "$SYS",
                          "$SYS/broker/uptime",
                          "a/monitor/Clients"};
  for (const char* topic : topics) {
    std::multiset<Hit> want;
    id = 1;
    for (const char* f : filters) {
      if (topic_matches(f, topic)) want.emplace(id, f);
      ++id;
    }
    EXPECT_EQ(match(t, topic).subs, want) << topic;
  }

  EXPECT_EQ(match(t, "sport").subs, subs({{2, "sport/#"}, {3, "#"}, {8, "+"}}));
  EXPECT_EQ(match(t, "/finance").subs, subs({{3, "#"}, {6, "+/+"}, {7, "/+"}}));
  EXPECT_EQ(match(t, "$SYS/monitor/Clients").subs, subs({{10, "$SYS/#"}, {11, "$SYS/monitor/+"}}));
}

TEST(SubTree, EmptyLevels) {
  SubTree t;
  ASSERT_EQ(t.insert("a//b", 1, {}), SubTree::Insert::added);
  ASSERT_EQ(t.insert("a/+/b", 2, {}), SubTree::Insert::added);
  ASSERT_EQ(t.insert("/", 3, {}), SubTree::Insert::added);
  ASSERT_EQ(t.insert("+/+", 4, {}), SubTree::Insert::added);
  EXPECT_EQ(match(t, "a//b").subs, subs({{1, "a//b"}, {2, "a/+/b"}}));
  EXPECT_EQ(match(t, "/").subs, subs({{3, "/"}, {4, "+/+"}}));
  EXPECT_EQ(match(t, "a/b").subs, subs({{4, "+/+"}}));
}

TEST(SubTree, OverlappingFiltersOfOneSubscriber) {
  SubTree t;
  t.insert("a/#", 7, qos(0, 1));
  t.insert("a/+/c", 7, qos(2, 2));
  t.insert("a/b/c", 7, qos(1, 3));
  t.insert("#", 8, qos(1));
  std::vector<std::pair<std::string, SubOptions>> seen;
  t.match(
      "a/b/c",
      [&](SubscriberId id, const SubOptions& o, std::string_view f) {
        if (id == 7) seen.emplace_back(std::string(f), o);
      },
      [](std::string_view, std::string_view, std::span<const SubEntry>) { FAIL(); });
  ASSERT_EQ(seen.size(), 3u);
  uint8_t max_qos = 0;
  std::set<uint32_t> ids;
  for (const auto& [f, o] : seen) {
    max_qos = std::max(max_qos, o.qos);
    ids.insert(o.subscription_id);
  }
  EXPECT_EQ(max_qos, 2);
  EXPECT_EQ(ids, (std::set<uint32_t>{1, 2, 3}));
}

TEST(SubTree, EraseCleansNodes) {
  SubTree t;
  t.insert("a/b/c/d", 1, {});
  t.insert("a/b/+/#", 1, {});
  t.insert("a/b/c/d", 2, {});
  t.insert("x", 3, {});
  EXPECT_EQ(t.size(), 4u);
  EXPECT_FALSE(t.erase("a/b/c/d", 9));
  EXPECT_FALSE(t.erase("a/b", 1));  // a node, but no subscription there
  EXPECT_FALSE(t.erase("nothing/here", 1));
  EXPECT_FALSE(t.erase("a/#/b", 1));
  EXPECT_TRUE(t.erase("a/b/c/d", 1));
  EXPECT_FALSE(t.erase("a/b/c/d", 1));
  EXPECT_EQ(match(t, "a/b/c/d").subs, subs({{1, "a/b/+/#"}, {2, "a/b/c/d"}}));
  EXPECT_TRUE(t.erase("a/b/c/d", 2));
  EXPECT_EQ(t.node_count(), 5u);  // a, b, +, #, x
  EXPECT_TRUE(t.erase("a/b/+/#", 1));
  EXPECT_EQ(t.node_count(), 1u);  // x
  EXPECT_TRUE(t.erase("x", 3));
  EXPECT_EQ(t.node_count(), 0u);
  EXPECT_TRUE(t.empty());
  EXPECT_TRUE(match(t, "a/b/c/d").subs.empty());
  // Reusable after being emptied.
  EXPECT_EQ(t.insert("a/b/c/d", 1, {}), SubTree::Insert::added);
  EXPECT_EQ(match(t, "a/b/c/d").subs, subs({{1, "a/b/c/d"}}));
}

TEST(SubTree, EraseKeepsSharedPrefix) {
  SubTree t;
  t.insert("a/b", 1, {});
  t.insert("a/b/c", 2, {});
  EXPECT_TRUE(t.erase("a/b", 1));
  EXPECT_EQ(t.node_count(), 3u);
  EXPECT_EQ(match(t, "a/b/c").subs, subs({{2, "a/b/c"}}));
  EXPECT_TRUE(match(t, "a/b").subs.empty());
  t.insert("a/b", 5, {});
  EXPECT_EQ(match(t, "a/b").subs, subs({{5, "a/b"}}));
}

TEST(SubTree, ManySubscribers) {
  SubTree t;
  constexpr SubscriberId kN = 2000;
  for (SubscriberId i = 0; i < kN; ++i) {
    ASSERT_EQ(t.insert("chat/room", i, qos(i % 3)), SubTree::Insert::added);
    ASSERT_EQ(t.insert("user/" + std::to_string(i) + "/#", i, {}), SubTree::Insert::added);
  }
  for (SubscriberId i = 0; i < kN; i += 3) {
    ASSERT_EQ(t.insert("chat/room", i, qos(1)), SubTree::Insert::replaced);
  }
  EXPECT_EQ(t.size(), 2 * kN);
  std::size_t n = 0;
  t.match(
      "chat/room",
      [&](SubscriberId id, const SubOptions& o, std::string_view) {
        ++n;
        EXPECT_EQ(o.qos, id % 3 == 0 ? 1 : id % 3);
      },
      [](std::string_view, std::string_view, std::span<const SubEntry>) {});
  EXPECT_EQ(n, kN);
  EXPECT_EQ(match(t, "user/42/inbox/7").subs, subs({{42, "user/42/#"}}));
  // Erase every other one: the index stays consistent through swap-and-pop.
  for (SubscriberId i = 0; i < kN; i += 2) ASSERT_TRUE(t.erase("chat/room", i));
  std::set<SubscriberId> left;
  t.match(
      "chat/room", [&](SubscriberId id, const SubOptions&, std::string_view) { left.insert(id); },
      [](std::string_view, std::string_view, std::span<const SubEntry>) {});
  ASSERT_EQ(left.size(), kN / 2);
  for (SubscriberId id : left) EXPECT_EQ(id % 2, 1u);
  for (SubscriberId i = 1; i < kN; i += 2) {
    ASSERT_NE(t.find("chat/room", i), nullptr) << i;
    ASSERT_TRUE(t.erase("chat/room", i));
  }
  for (SubscriberId i = 0; i < kN; ++i) ASSERT_TRUE(t.erase("user/" + std::to_string(i) + "/#", i));
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.node_count(), 0u);
}

TEST(SubTree, SharedGroupsReportedOnce) {
  SubTree t;
  EXPECT_EQ(t.insert("$share/g1/sensors/+", 1, qos(1)), SubTree::Insert::added);
  EXPECT_EQ(t.insert("$share/g1/sensors/+", 2, qos(0)), SubTree::Insert::added);
  EXPECT_EQ(t.insert("$share/g1/sensors/+", 2, qos(2)), SubTree::Insert::replaced);
  EXPECT_EQ(t.insert("$share/g2/sensors/+", 3, {}), SubTree::Insert::added);
  EXPECT_EQ(t.insert("$share/g1/sensors/#", 4, {}), SubTree::Insert::added);  // another filter
  EXPECT_EQ(t.insert("sensors/+", 1, {}), SubTree::Insert::added);  // not shared: separate
  EXPECT_EQ(t.size(), 5u);
  ASSERT_NE(t.find("$share/g1/sensors/+", 2), nullptr);
  EXPECT_EQ(t.find("$share/g1/sensors/+", 2)->qos, 2);
  EXPECT_EQ(t.find("$share/g2/sensors/+", 2), nullptr);

  Matches m = match(t, "sensors/a");
  EXPECT_EQ(m.subs, subs({{1, "sensors/+"}}));
  using Key = std::pair<std::string, std::string>;
  std::map<Key, std::set<SubscriberId>> want = {
      {{"g1", "sensors/+"}, {1, 2}}, {{"g2", "sensors/+"}, {3}}, {{"g1", "sensors/#"}, {4}}};
  EXPECT_EQ(m.groups, want);

  EXPECT_FALSE(t.erase("$share/g3/sensors/+", 1));
  EXPECT_FALSE(t.erase("$share/g1/sensors/+", 3));
  EXPECT_TRUE(t.erase("$share/g1/sensors/+", 1));
  EXPECT_TRUE(t.erase("$share/g1/sensors/+", 2));
  m = match(t, "sensors/a");
  want = {{{"g2", "sensors/+"}, {3}}, {{"g1", "sensors/#"}, {4}}};
  EXPECT_EQ(m.groups, want);
  EXPECT_TRUE(t.erase("$share/g2/sensors/+", 3));
  EXPECT_TRUE(t.erase("$share/g1/sensors/#", 4));
  EXPECT_TRUE(t.erase("sensors/+", 1));
  EXPECT_EQ(t.node_count(), 0u);
}

TEST(SubTree, SharedDollarRule) {
  SubTree t;
  t.insert("$share/g/#", 1, {});
  t.insert("$share/g/$SYS/#", 2, {});
  Matches m = match(t, "$SYS/x");
  ASSERT_EQ(m.groups.size(), 1u);
  EXPECT_EQ(m.groups.begin()->first.second, "$SYS/#");
  EXPECT_EQ(match(t, "x").groups.size(), 1u);
}

TEST(SubTree, DeepTopicsDoNotRecurse) {
  SubTree t;
  std::string deep(kMaxTopicBytes, '/');  // 65536 empty levels
  ASSERT_EQ(t.insert(deep, 1, {}), SubTree::Insert::added);
  std::string deep_plus;
  for (int i = 0; i < 20000; ++i) deep_plus += i == 0 ? "+" : "/+";
  ASSERT_EQ(t.insert(deep_plus, 2, {}), SubTree::Insert::added);
  t.insert("#", 3, {});
  EXPECT_EQ(match(t, deep).subs, subs({{1, deep}, {3, "#"}}));
  std::string topic20000(19999, '/');
  EXPECT_EQ(match(t, topic20000).subs, subs({{2, deep_plus}, {3, "#"}}));
  EXPECT_TRUE(t.erase(deep, 1));
  EXPECT_EQ(t.node_count(), 20000u + 1u);
  // the destructor frees the 20000-deep "+" chain iteratively
}

TEST(SubTree, Move) {
  SubTree a;
  a.insert("a/b", 1, {});
  SubTree b(std::move(a));
  EXPECT_EQ(b.size(), 1u);
  EXPECT_EQ(match(b, "a/b").subs, subs({{1, "a/b"}}));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty and usable
  a.insert("c", 2, {});
  b = std::move(a);
  EXPECT_EQ(match(b, "c").subs, subs({{2, "c"}}));
  EXPECT_TRUE(match(b, "a/b").subs.empty());
}

// A randomized comparison against topic_matches.
TEST(SubTree, AgreesWithTopicMatches) {
  const char* levels[] = {"a", "b", "", "$x"};
  std::vector<std::string> filters, topics;
  uint32_t seed = 12345;
  auto rnd = [&](uint32_t n) {
    seed = seed * 1103515245 + 12345;
    return (seed >> 16) % n;
  };
  for (int i = 0; i < 300; ++i) {
    int depth = 1 + static_cast<int>(rnd(4));
    std::string f, topic;
    for (int d = 0; d < depth; ++d) {
      if (d) {
        f += '/';
        topic += '/';
      }
      uint32_t r = rnd(6);
      const char* lv = levels[rnd(4)];
      if (d > 0 && std::string_view(lv) == "$x") lv = "a";
      topic += lv;
      if (r == 0) {
        f += '+';
      } else if (r == 1 && d == depth - 1) {
        f += '#';
      } else {
        f += lv;
      }
    }
    if (f.empty()) continue;  // one empty level: neither a filter nor a topic
    filters.push_back(f);
    topics.push_back(topic);
  }
  SubTree t;
  for (std::size_t i = 0; i < filters.size(); ++i) {
    ASSERT_NE(t.insert(filters[i], i, {}), SubTree::Insert::invalid) << filters[i];
  }
  for (const auto& topic : topics) {
    std::multiset<Hit> want;
    for (std::size_t i = 0; i < filters.size(); ++i)
      if (topic_matches(filters[i], topic)) want.emplace(i, filters[i]);
    EXPECT_EQ(match(t, topic).subs, want) << topic;
  }
}

// ---- RetainedTree

std::map<std::string, int> retained(const RetainedTree<int>& r, std::string_view filter) {
  std::map<std::string, int> out;
  r.match(filter, [&](std::string_view topic, const int& v) {
    EXPECT_TRUE(out.emplace(std::string(topic), v).second) << "twice: " << topic;
  });
  return out;
}

TEST(RetainedTree, SetFindErase) {
  RetainedTree<int> r;
  EXPECT_TRUE(r.set("a/b", 1));
  EXPECT_FALSE(r.set("a/b", 2));  // replaced
  EXPECT_FALSE(r.set("a/+", 3));  // not a topic name
  EXPECT_FALSE(r.set("", 3));
  ASSERT_NE(r.find("a/b"), nullptr);
  EXPECT_EQ(*r.find("a/b"), 2);
  EXPECT_EQ(r.find("a"), nullptr);
  EXPECT_EQ(r.find("a/b/c"), nullptr);
  EXPECT_EQ(r.size(), 1u);
  EXPECT_TRUE(r.set("a", 10));
  EXPECT_EQ(r.size(), 2u);
  EXPECT_FALSE(r.erase("x"));
  EXPECT_TRUE(r.erase("a/b"));
  EXPECT_FALSE(r.erase("a/b"));
  EXPECT_EQ(*r.find("a"), 10);
  EXPECT_TRUE(r.erase("a"));
  EXPECT_TRUE(r.empty());
  r.set("m", 1);
  *r.find("m") = 5;  // the non-const find gives a mutable value
  EXPECT_EQ(*std::as_const(r).find("m"), 5);
}

TEST(RetainedTree, MatchFilters) {
  RetainedTree<int> r;
  int v = 0;
  for (const char* topic :
       {"sport", "sport/", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking",
        "sport/golf/player1", "/finance", "finance", "/", "$SYS/broker/uptime", "$SYS", "a//b"}) {
    r.set(topic, v++);
  }
  auto topics = [&](std::string_view filter) {
    std::set<std::string> out;
    for (const auto& [t, val] : retained(r, filter)) out.insert(t);
    return out;
  };
  using S = std::set<std::string>;
  EXPECT_EQ(topics("#"), (S{"sport", "sport/", "sport/tennis", "sport/tennis/player1",
                            "sport/tennis/player1/ranking", "sport/golf/player1", "/finance",
                            "finance", "/", "a//b"}));
  EXPECT_EQ(topics("sport/#"), (S{"sport", "sport/", "sport/tennis", "sport/tennis/player1",
                                  "sport/tennis/player1/ranking", "sport/golf/player1"}));
  EXPECT_EQ(topics("sport/+"), (S{"sport/", "sport/tennis"}));
  EXPECT_EQ(topics("sport/+/player1"), (S{"sport/tennis/player1", "sport/golf/player1"}));
  EXPECT_EQ(topics("sport/tennis/player1/#"),
            (S{"sport/tennis/player1", "sport/tennis/player1/ranking"}));
  EXPECT_EQ(topics("+"), (S{"sport", "finance"}));
  EXPECT_EQ(topics("+/+"), (S{"sport/", "sport/tennis", "/finance", "/"}));
  EXPECT_EQ(topics("/+"), (S{"/finance", "/"}));
  EXPECT_EQ(topics("+/#"), topics("#"));
  EXPECT_EQ(topics("$SYS/#"), (S{"$SYS", "$SYS/broker/uptime"}));
  EXPECT_EQ(topics("$SYS/+/uptime"), (S{"$SYS/broker/uptime"}));
  EXPECT_EQ(topics("a/+/b"), (S{"a//b"}));
  EXPECT_EQ(topics("sport"), (S{"sport"}));
  EXPECT_EQ(topics("nothing/#"), S{});
  EXPECT_EQ(topics("a/#/b"), S{});  // invalid filter: nothing
  EXPECT_EQ(retained(r, "finance"), (std::map<std::string, int>{{"finance", 7}}));
}

TEST(RetainedTree, AgreesWithTopicMatches) {
  RetainedTree<int> r;
  std::vector<std::string> topics = {"a",  "a/b", "a/b/c", "b",    "/",        "//",
                                     "a/", "$x",  "$x/a",  "b/$x", "a/b/c/d/e"};
  for (std::size_t i = 0; i < topics.size(); ++i) r.set(topics[i], static_cast<int>(i));
  for (const char* f : {"#", "+", "+/+", "+/#", "a/#", "a/+", "a/+/#", "$x/#", "+/$x", "/#", "/+",
                        "+/", "a/b/c/d/e", "a/+/c/#"}) {
    std::set<std::string> want, got;
    for (const auto& t : topics)
      if (topic_matches(f, t)) want.insert(t);
    for (const auto& [t, v] : retained(r, f)) got.insert(t);
    EXPECT_EQ(got, want) << f;
  }
}

TEST(RetainedTree, EraseCleansAndDeepTopics) {
  RetainedTree<std::string> r;
  std::string deep(kMaxTopicBytes, '/');
  EXPECT_TRUE(r.set(deep, "deep"));
  EXPECT_TRUE(r.set("a/b/c", "abc"));
  std::size_t n = 0;
  r.match("#", [&](std::string_view, const std::string&) { ++n; });
  EXPECT_EQ(n, 2u);
  n = 0;
  r.for_each([&](std::string_view, const std::string&) { ++n; });
  EXPECT_EQ(n, 2u);
  EXPECT_TRUE(r.erase(deep));
  EXPECT_EQ(r.size(), 1u);
  EXPECT_TRUE(r.set(deep, "again"));
  RetainedTree<std::string> moved(std::move(r));
  EXPECT_EQ(moved.size(), 2u);
  EXPECT_TRUE(r.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(*moved.find("a/b/c"), "abc");
  // destructor of `moved` frees the 65536-deep chain iteratively
}

}  // namespace
