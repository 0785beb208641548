#include "gateway/mqtt/topic.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace converge::mqtt;

namespace {

TEST(TopicName, Valid) {
  EXPECT_TRUE(valid_topic_name("a"));
  EXPECT_TRUE(valid_topic_name("sport/tennis/player1"));
  EXPECT_TRUE(valid_topic_name("/"));
  EXPECT_TRUE(valid_topic_name("//"));
  EXPECT_TRUE(valid_topic_name("/finance"));
  EXPECT_TRUE(valid_topic_name("a//b"));
  EXPECT_TRUE(valid_topic_name("Accounts payable"));  // spaces are allowed
  EXPECT_TRUE(valid_topic_name("$SYS/broker/uptime"));
  EXPECT_TRUE(valid_topic_name("caf\xc3\xa9/\xe2\x82\xac"));  // UTF-8
  EXPECT_TRUE(valid_topic_name(std::string(kMaxTopicBytes, 'x')));
}

TEST(TopicName, Invalid) {
  EXPECT_FALSE(valid_topic_name(""));
  EXPECT_FALSE(valid_topic_name("a/+"));
  EXPECT_FALSE(valid_topic_name("a/#"));
  EXPECT_FALSE(valid_topic_name("+"));
  EXPECT_FALSE(valid_topic_name("#"));
  EXPECT_FALSE(valid_topic_name("a+b"));
  EXPECT_FALSE(valid_topic_name("a#b"));
  EXPECT_FALSE(valid_topic_name(std::string("a\0b", 3)));
  EXPECT_FALSE(valid_topic_name("bad\xff"));
  EXPECT_FALSE(valid_topic_name("\xc0\xaf"));      // overlong
  EXPECT_FALSE(valid_topic_name("\xed\xa0\x80"));  // surrogate
  EXPECT_FALSE(valid_topic_name(std::string(kMaxTopicBytes + 1, 'x')));
}

TEST(TopicFilter, Valid) {
  for (const char* f :
       {"#", "+", "+/+", "/+", "+/", "sport/tennis/#", "sport/+/player1", "+/tennis/#", "sport/#",
        "a//b", "/", "$SYS/#", "$SYS/monitor/+", "a/+/+/#", "sport/tennis/player1"}) {
    EXPECT_TRUE(valid_topic_filter(f)) << f;
  }
  EXPECT_TRUE(valid_topic_filter("$share/g/a/#"));  // syntactically an ordinary filter too
  EXPECT_TRUE(valid_topic_filter(std::string(kMaxTopicBytes, 'x')));
}

TEST(TopicFilter, Invalid) {
  for (const char* f : {"", "a/#/b", "sport/tennis/#/ranking", "a#", "sport/tennis#", "#/", "##",
                        "a+/b", "sport+", "++", "+a", "a/b+", "#a", "a/#b", "#/#", "+#", "a/+#"}) {
    EXPECT_FALSE(valid_topic_filter(f)) << f;
  }
  EXPECT_FALSE(valid_topic_filter(std::string("a/\0", 3)));
  EXPECT_FALSE(valid_topic_filter("a/\xff"));
  EXPECT_FALSE(valid_topic_filter(std::string(kMaxTopicBytes + 1, 'x')));
}

// MQTT 5 section 4.7, non-normative examples.
TEST(TopicMatches, SpecMultiLevelWildcard) {
  EXPECT_TRUE(topic_matches("sport/tennis/player1/#", "sport/tennis/player1"));
  EXPECT_TRUE(topic_matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
  EXPECT_TRUE(topic_matches("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
  EXPECT_FALSE(topic_matches("sport/tennis/player1/#", "sport/tennis/player2"));
  EXPECT_FALSE(topic_matches("sport/tennis/player1/#", "sport/tennis"));
  EXPECT_TRUE(topic_matches("sport/#", "sport"));
  EXPECT_TRUE(topic_matches("sport/#", "sport/"));
  EXPECT_TRUE(topic_matches("#", "sport"));
  EXPECT_TRUE(topic_matches("#", "sport/tennis/player1"));
  EXPECT_TRUE(topic_matches("#", "/"));
  EXPECT_TRUE(topic_matches("#", "/finance"));
}

TEST(TopicMatches, SpecSingleLevelWildcard) {
  EXPECT_TRUE(topic_matches("sport/tennis/+", "sport/tennis/player1"));
  EXPECT_TRUE(topic_matches("sport/tennis/+", "sport/tennis/player2"));
  EXPECT_FALSE(topic_matches("sport/tennis/+", "sport/tennis/player1/ranking"));
  EXPECT_FALSE(topic_matches("sport/+", "sport"));
  EXPECT_TRUE(topic_matches("sport/+", "sport/"));  // + matches an empty level
  EXPECT_TRUE(topic_matches("sport/+/player1", "sport/tennis/player1"));
  EXPECT_TRUE(topic_matches("+/+", "/finance"));
  EXPECT_TRUE(topic_matches("/+", "/finance"));
  EXPECT_FALSE(topic_matches("+", "/finance"));
  EXPECT_TRUE(topic_matches("+", "finance"));
  EXPECT_TRUE(topic_matches("+/tennis/#", "sport/tennis/player1/ranking"));
  EXPECT_TRUE(topic_matches("+/tennis/#", "sport/tennis"));
  EXPECT_TRUE(topic_matches("+/+", "/"));
  EXPECT_TRUE(topic_matches("a/+/b", "a//b"));
  EXPECT_FALSE(topic_matches("a/+/b", "a/b"));
}

TEST(TopicMatches, SpecDollarTopics) {
  EXPECT_FALSE(topic_matches("#", "$SYS/broker/clients"));
  EXPECT_FALSE(topic_matches("#", "$SYS"));
  EXPECT_FALSE(topic_matches("+/monitor/Clients", "$SYS/monitor/Clients"));
  EXPECT_FALSE(topic_matches("+", "$SYS"));
  EXPECT_FALSE(topic_matches("+/#", "$SYS/x"));
  EXPECT_TRUE(topic_matches("$SYS/#", "$SYS/monitor/Clients"));
  EXPECT_TRUE(topic_matches("$SYS/#", "$SYS"));
  EXPECT_TRUE(topic_matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
  EXPECT_TRUE(topic_matches("$SYS/monitor/Clients", "$SYS/monitor/Clients"));
  // Only the first character counts: "$" elsewhere is ordinary.
  EXPECT_TRUE(topic_matches("#", "a/$SYS"));
  EXPECT_TRUE(topic_matches("a/+", "a/$b"));
}

TEST(TopicMatches, LiteralAndCase) {
  EXPECT_TRUE(topic_matches("a/b/c", "a/b/c"));
  EXPECT_FALSE(topic_matches("a/b/c", "a/b"));
  EXPECT_FALSE(topic_matches("a/b", "a/b/c"));
  EXPECT_FALSE(topic_matches("ACCOUNTS", "Accounts"));
  EXPECT_TRUE(topic_matches("Accounts payable", "Accounts payable"));
  EXPECT_FALSE(topic_matches("/finance", "finance"));
  EXPECT_FALSE(topic_matches("finance", "/finance"));
  EXPECT_FALSE(topic_matches("a/", "a"));
  EXPECT_TRUE(topic_matches("a/", "a/"));
  EXPECT_FALSE(topic_matches("", "a"));
  EXPECT_FALSE(topic_matches("a", ""));
}

TEST(FilterCovers, Basics) {
  EXPECT_TRUE(filter_covers("#", "#"));
  EXPECT_TRUE(filter_covers("#", "a/+"));
  EXPECT_TRUE(filter_covers("#", "a/b"));
  EXPECT_TRUE(filter_covers("#", "+/#"));
  EXPECT_TRUE(filter_covers("+/#", "#"));  // both: every non-$ topic
  EXPECT_TRUE(filter_covers("sensors/+/temp", "sensors/+/temp"));
  EXPECT_TRUE(filter_covers("sensors/+/temp", "sensors/a/temp"));
  EXPECT_FALSE(filter_covers("sensors/+/temp", "sensors/#"));
  EXPECT_FALSE(filter_covers("sensors/+/temp", "sensors/+/+"));
  EXPECT_FALSE(filter_covers("sensors/+/temp", "sensors/a"));
  EXPECT_FALSE(filter_covers("sensors/+/temp", "sensors/a/temp/x"));
  EXPECT_TRUE(filter_covers("a/#", "a"));
  EXPECT_TRUE(filter_covers("a/#", "a/#"));
  EXPECT_TRUE(filter_covers("a/#", "a/b/+/#"));
  EXPECT_FALSE(filter_covers("a/+/#", "a/#"));  // a/#: also "a"
  EXPECT_TRUE(filter_covers("a/+/#", "a/+"));
  EXPECT_FALSE(filter_covers("a", "a/#"));
  EXPECT_FALSE(filter_covers("a/b", "a/+"));  // a literal covers only itself
  EXPECT_TRUE(filter_covers("a/b", "a/b"));
  EXPECT_FALSE(filter_covers("a/b", "a/c"));
  EXPECT_FALSE(filter_covers("+/+", "#"));
  EXPECT_FALSE(filter_covers("+", "a/b"));
  EXPECT_TRUE(filter_covers("+", "+"));
  EXPECT_TRUE(filter_covers("a/+", "a/"));  // "a/": the levels "a" and ""
  EXPECT_TRUE(filter_covers("a/+", "a/+"));
}

TEST(FilterCovers, DollarRule) {
  EXPECT_FALSE(filter_covers("#", "$SYS/#"));
  EXPECT_FALSE(filter_covers("#", "$SYS"));
  EXPECT_FALSE(filter_covers("+/#", "$SYS/x"));
  EXPECT_FALSE(filter_covers("+", "$SYS"));
  EXPECT_TRUE(filter_covers("$SYS/#", "$SYS/broker/+"));
  EXPECT_TRUE(filter_covers("$SYS/#", "$SYS"));
  EXPECT_TRUE(filter_covers("#", "+"));  // "+" matches no $ topic, so "#" covers it
  EXPECT_FALSE(filter_covers("$SYS/#", "#"));
}

TEST(FilterCovers, InvalidIsFalse) {
  EXPECT_FALSE(filter_covers("#", "a/#/b"));
  EXPECT_FALSE(filter_covers("a/#/b", "a/x/b"));
  EXPECT_FALSE(filter_covers("", ""));
}

// Filter covering agrees with matching: when a covers b, every topic b matches, a matches.
TEST(FilterCovers, ConsistentWithMatching) {
  const char* filters[] = {"#",   "+",  "+/+", "+/#", "a/#",  "a/+", "a/b",  "a",     "a/+/c",
                           "+/b", "a/", "/+",  "/#",  "$x/#", "$x",  "$x/+", "a/b/#", "+/+/+"};
  const char* topics[] = {"a",  "a/b",  "a/c", "a/b/c", "b",     "/",   "a/",      "/b",
                          "$x", "$x/y", "x/b", "a//c",  "a/x/c", "b/b", "a/b/c/d", "c/d/e"};
  for (const char* outer : filters) {
    for (const char* inner : filters) {
      if (!filter_covers(outer, inner)) continue;
      for (const char* t : topics) {
        if (topic_matches(inner, t)) {
          EXPECT_TRUE(topic_matches(outer, t)) << outer << " covers " << inner << " but " << t;
        }
      }
    }
  }
  // and a few where it does not cover, there is a witness topic.
  EXPECT_FALSE(filter_covers("a/+", "a/#"));
  EXPECT_TRUE(topic_matches("a/#", "a") && !topic_matches("a/+", "a"));
}

TEST(Shared, Parse) {
  auto s = parse_shared("$share/group1/sport/+/player1");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->group, "group1");
  EXPECT_EQ(s->filter, "sport/+/player1");
  s = parse_shared("$share/g/#");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->group, "g");
  EXPECT_EQ(s->filter, "#");
  s = parse_shared("$share/g/$SYS/#");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->filter, "$SYS/#");
  s = parse_shared("$share/g//a");  // the filter "/a"
  ASSERT_TRUE(s);
  EXPECT_EQ(s->filter, "/a");
  s = parse_shared("$share/caf\xc3\xa9 1/x");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->group, "caf\xc3\xa9 1");
}

TEST(Shared, NotSharedVersusMalformed) {
  for (const char* f :
       {"sport/#", "$share", "$shared/g/x", "$SYS/#", "share/g/x", "a/$share/g/x"}) {
    EXPECT_FALSE(is_shared(f)) << f;
    EXPECT_FALSE(parse_shared(f)) << f;
  }
  for (const char* f :
       {"$share/", "$share/g", "$share/g/", "$share//x", "$share/g+/x", "$share/g#/x", "$share/+/x",
        "$share/#/x", "$share/g/a/#/b", "$share/g/a+", "$share/g/#/"}) {
    EXPECT_TRUE(is_shared(f)) << f;
    EXPECT_FALSE(parse_shared(f)) << f;
  }
  EXPECT_FALSE(parse_shared("$share/\xff/x"));
}

}  // namespace
