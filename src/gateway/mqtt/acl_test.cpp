#include "gateway/mqtt/acl.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

using namespace converge::mqtt;

namespace {

Acl parse_ok(std::string_view text) {
  auto r = Acl::parse(text);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : Acl::default_rules();
}

// The error message of a file that must not parse.
std::string parse_error(std::string_view text) {
  auto r = Acl::parse(text);
  EXPECT_FALSE(r.ok()) << "parsed: " << text;
  if (r.ok()) return {};
  EXPECT_EQ(r.error().code, converge::Errc::bad_request);
  return r.error().message;
}

const AclClient kAnon{std::nullopt, "anon-client"};
AclClient user(std::string_view name, std::string_view client = "dev1") {
  return AclClient{name, client};
}

// The file the Eclipse Paho interoperability suite runs with.
constexpr std::string_view kPahoAcl =
    "# Paho interoperability tests: anyone may do anything but subscribe to test/nosubscribe\n"
    "topic readwrite #\n"
    "topic deny test/nosubscribe\n";

TEST(Acl, PahoFile) {
  Acl acl = parse_ok(kPahoAcl);
  EXPECT_EQ(acl.rule_count(), 2u);
  for (const AclClient& c : {kAnon, user("myusername", "myclientid")}) {
    EXPECT_FALSE(acl.can_subscribe(c, "test/nosubscribe"));
    EXPECT_FALSE(acl.can_subscribe(c, "$share/g/test/nosubscribe"));
    for (const char* f : {"#", "+/#", "TopicA", "TopicA/#", "TopicA/+", "Topic/C", "test/+",
                          "test/#", "test/nosubscribe/x", "/", "$share/g/#"}) {
      EXPECT_TRUE(acl.can_subscribe(c, f)) << f;
    }
    EXPECT_TRUE(acl.can_publish(c, "TopicA/B"));
    EXPECT_TRUE(acl.can_read(c, "TopicA/B"));
    EXPECT_TRUE(acl.can_read(c, "test/other"));
    // The deny is total: no publish to it and no delivery through "test/+" or "#" either.
    EXPECT_FALSE(acl.can_read(c, "test/nosubscribe"));
    EXPECT_FALSE(acl.can_publish(c, "test/nosubscribe"));
    // `#` does not reach `$` topics (the MQTT rule, as in mosquitto).
    EXPECT_FALSE(acl.can_subscribe(c, "$SYS/#"));
    EXPECT_FALSE(acl.can_read(c, "$SYS/broker/uptime"));
    EXPECT_FALSE(acl.can_publish(c, "$TopicA/B"));
    // Not filters / not topic names.
    EXPECT_FALSE(acl.can_subscribe(c, "a/#/b"));
    EXPECT_FALSE(acl.can_subscribe(c, "$share/g"));
    EXPECT_FALSE(acl.can_subscribe(c, ""));
    EXPECT_FALSE(acl.can_publish(c, "a/+"));
    EXPECT_FALSE(acl.can_publish(c, ""));
  }
}

TEST(Acl, DollarTopicsNeedDollarRules) {
  Acl acl = parse_ok("topic readwrite #\ntopic read $SYS/#\n");
  EXPECT_TRUE(acl.can_subscribe(kAnon, "$SYS/#"));
  EXPECT_TRUE(acl.can_subscribe(kAnon, "$SYS/broker/+"));
  EXPECT_TRUE(acl.can_read(kAnon, "$SYS/broker/uptime"));
  EXPECT_FALSE(acl.can_publish(kAnon, "$SYS/broker/uptime"));
}

TEST(AclParse, LineForms) {
  Acl acl = parse_ok(
      "# a comment\n"
      "\n"
      "   \t\n"
      "  # an indented comment\n"
      "topic plain/rw\n"
      "topic read r/#\r\n"
      "topic\twrite\tw/+\n"
      "topic readwrite rw/x   \n"
      "topic deny r/secret\n"
      "topic read with space/in it\n"
      "   topic read indented\n"
      "pattern read p/%c\n"
      "pattern p2/%u\n"
      "user alice\n"
      "topic alice/#\n");
  EXPECT_EQ(acl.rule_count(), 10u);
  const AclClient c = kAnon;
  EXPECT_TRUE(acl.can_publish(c, "plain/rw"));  // no access word: readwrite
  EXPECT_TRUE(acl.can_read(c, "plain/rw"));
  EXPECT_TRUE(acl.can_read(c, "r/x"));
  EXPECT_FALSE(acl.can_publish(c, "r/x"));
  EXPECT_TRUE(acl.can_publish(c, "w/x"));
  EXPECT_FALSE(acl.can_read(c, "w/x"));
  EXPECT_TRUE(acl.can_read(c, "rw/x"));
  EXPECT_TRUE(acl.can_publish(c, "rw/x"));
  EXPECT_FALSE(acl.can_read(c, "r/secret"));
  EXPECT_TRUE(acl.can_read(c, "with space/in it"));
  EXPECT_TRUE(acl.can_read(c, "indented"));
  EXPECT_TRUE(acl.can_read(c, "p/anon-client"));
  EXPECT_FALSE(acl.can_read(c, "p2/x"));  // %u: not for anonymous
  EXPECT_TRUE(acl.can_publish(user("bob"), "p2/bob"));
  EXPECT_FALSE(acl.can_publish(c, "alice/x"));
  EXPECT_TRUE(acl.can_publish(user("alice"), "alice/x"));
}

TEST(AclParse, SingleWordIsTheFilter) {
  // As mosquitto: the access word is optional, so a lone word is the topic (readwrite).
  Acl acl = parse_ok("topic deny\ntopic read\n");
  EXPECT_TRUE(acl.can_publish(kAnon, "deny"));
  EXPECT_TRUE(acl.can_read(kAnon, "read"));
  EXPECT_FALSE(acl.can_read(kAnon, "other"));
}

TEST(AclParse, EmptyFileAllowsNothing) {
  for (std::string_view text : {"", "\n", "# nothing\n\n"}) {
    Acl acl = parse_ok(text);
    EXPECT_EQ(acl.rule_count(), 0u);
    EXPECT_FALSE(acl.can_publish(kAnon, "a"));
    EXPECT_FALSE(acl.can_subscribe(user("alice"), "#"));
  }
}

TEST(AclParse, ErrorsNameTheLine) {
  EXPECT_EQ(parse_error("topic a\nbogus a/b\n"),
            "line 2: unknown keyword \"bogus\" (topic, pattern, user or a # comment)");
  EXPECT_EQ(parse_error("topic\n"), "line 1: missing topic filter");
  EXPECT_EQ(parse_error("\n\npattern   \n"), "line 3: missing topic filter");
  EXPECT_EQ(parse_error("# c\ntopic rw a/b\n"),
            "line 2: invalid access type \"rw\" (read, write, readwrite or deny)");
  EXPECT_EQ(parse_error("topic read a/#/b\n"), "line 1: invalid topic filter \"a/#/b\"");
  EXPECT_EQ(parse_error("topic a\r\ntopic read a#\r\n"), "line 2: invalid topic filter \"a#\"");
  EXPECT_EQ(parse_error("pattern write dev/+%c\n"), "line 1: invalid topic filter \"dev/+%c\"");
  EXPECT_EQ(parse_error("topic a\ntopic b\nuser\n"), "line 3: missing username");
  EXPECT_EQ(parse_error("user   \n"), "line 1: missing username");
  EXPECT_EQ(parse_error("topic a\ntopic \xff\n"), "line 2: not valid UTF-8");
  EXPECT_EQ(parse_error(std::string_view("topic a\0b\n", 10)), "line 1: contains NUL");
  EXPECT_EQ(parse_error("Topic a\n"),  // keywords are case-sensitive, as in mosquitto
            "line 1: unknown keyword \"Topic\" (topic, pattern, user or a # comment)");
  EXPECT_EQ(parse_error("topic read a/b\nuser bob\ntopic write #/x"),  // no final newline
            "line 3: invalid topic filter \"#/x\"");
}

TEST(AclParse, LoadFile) {
  std::string path = testing::TempDir() + "/mqtt_acl_test.acl";
  {
    std::ofstream out(path, std::ios::binary);
    out << kPahoAcl;
  }
  auto acl = Acl::load_file(path);
  ASSERT_TRUE(acl.ok()) << acl.error().message;
  EXPECT_FALSE(acl->can_subscribe(kAnon, "test/nosubscribe"));
  EXPECT_TRUE(acl->can_subscribe(kAnon, "test/yes"));
  {
    std::ofstream out(path, std::ios::binary);
    out << "topic a\ntopic read a/#/b\n";
  }
  acl = Acl::load_file(path);
  ASSERT_FALSE(acl.ok());
  EXPECT_EQ(acl.error().message, path + ": line 2: invalid topic filter \"a/#/b\"");
  std::remove(path.c_str());
  acl = Acl::load_file(path);
  ASSERT_FALSE(acl.ok());
  EXPECT_EQ(acl.error().code, converge::Errc::not_found);
  EXPECT_EQ(acl.error().message.rfind(path + ": ", 0), 0u) << acl.error().message;
}

TEST(Acl, PerUserBlocks) {
  Acl acl = parse_ok(
      "topic read public/#\n"
      "user alice\n"
      "topic readwrite alice/#\n"
      "topic read shared/#\n"
      "user bob smith\n"  // a username may contain spaces (rest of the line)
      "topic write bob/#\n"
      "user alice\n"  // a second block of alice adds up
      "topic write shared/alice\n");
  // Global lines apply to everyone, anonymous included.
  for (const AclClient& c : {kAnon, user("alice"), user("bob smith"), user("carol")}) {
    EXPECT_TRUE(acl.can_read(c, "public/news"));
    EXPECT_FALSE(acl.can_publish(c, "public/news"));
  }
  EXPECT_TRUE(acl.can_publish(user("alice"), "alice/x"));
  EXPECT_TRUE(acl.can_subscribe(user("alice"), "alice/#"));
  EXPECT_TRUE(acl.can_read(user("alice"), "shared/x"));
  EXPECT_TRUE(acl.can_publish(user("alice"), "shared/alice"));
  EXPECT_FALSE(acl.can_publish(user("alice"), "shared/x"));
  EXPECT_FALSE(acl.can_publish(user("alice"), "bob/x"));
  EXPECT_TRUE(acl.can_publish(user("bob smith"), "bob/x"));
  EXPECT_FALSE(acl.can_read(user("bob smith"), "bob/x"));
  EXPECT_FALSE(acl.can_publish(user("bob"), "bob/x"));
  EXPECT_FALSE(acl.can_publish(user("Alice"), "alice/x"));  // usernames are case-sensitive
  EXPECT_FALSE(acl.can_publish(kAnon, "alice/x"));
  EXPECT_FALSE(acl.can_publish(user("carol"), "alice/x"));
  // The client id is not the username.
  EXPECT_FALSE(acl.can_publish(AclClient{std::nullopt, "alice"}, "alice/x"));
}

TEST(Acl, Patterns) {
  Acl acl = parse_ok(
      "pattern readwrite devices/%c/#\n"
      "pattern read users/%u/inbox/+\n"
      "user alice\n"
      "pattern write log/%u/%c\n"  // patterns in a user block still apply to everyone
      "pattern read x/%u-%c\n");   // substitution inside a level
  const AclClient alice = user("alice", "phone");
  EXPECT_TRUE(acl.can_publish(alice, "devices/phone/state"));
  EXPECT_TRUE(acl.can_subscribe(alice, "devices/phone/#"));
  EXPECT_FALSE(acl.can_subscribe(alice, "devices/+/#"));
  EXPECT_FALSE(acl.can_publish(alice, "devices/tablet/state"));
  EXPECT_TRUE(acl.can_read(alice, "users/alice/inbox/bob"));
  EXPECT_TRUE(acl.can_subscribe(alice, "users/alice/inbox/+"));
  EXPECT_FALSE(acl.can_subscribe(alice, "users/alice/#"));
  EXPECT_FALSE(acl.can_read(alice, "users/bob/inbox/alice"));
  EXPECT_TRUE(acl.can_publish(user("bob", "pc"), "log/bob/pc"));
  EXPECT_FALSE(acl.can_publish(user("bob", "pc"), "log/alice/pc"));
  EXPECT_TRUE(acl.can_read(alice, "x/alice-phone"));
  // Anonymous: %c patterns apply, %u patterns do not.
  const AclClient anon{std::nullopt, "sensor7"};
  EXPECT_TRUE(acl.can_publish(anon, "devices/sensor7/t"));
  EXPECT_FALSE(acl.can_read(anon, "users//inbox/x"));
  EXPECT_FALSE(acl.can_read(anon, "users/%u/inbox/x"));
  EXPECT_FALSE(acl.can_publish(anon, "log//sensor7"));
}

TEST(Acl, PatternsRefuseUnsafeSubstitutions) {
  Acl acl = parse_ok(
      "pattern readwrite app/%u/#\n"
      "pattern readwrite dev/%c\n"
      "topic read open/#\n");
  // A username with '/' would reach into another user's tree, '+' or '#' everywhere.
  EXPECT_FALSE(acl.can_read(user("a/b"), "app/a/b/x"));
  EXPECT_FALSE(acl.can_subscribe(user("a/b"), "app/a/b/#"));
  EXPECT_FALSE(acl.can_read(user("+"), "app/x/y"));
  EXPECT_FALSE(acl.can_subscribe(user("+"), "app/+/#"));
  EXPECT_FALSE(acl.can_subscribe(user("#"), "app/#"));
  EXPECT_FALSE(acl.can_read(user("#"), "app/x"));
  EXPECT_FALSE(acl.can_read(user(""), "app//x"));
  EXPECT_FALSE(acl.can_publish(user("ok", "c/x"), "dev/c/x"));
  EXPECT_FALSE(acl.can_publish(user("ok", "#"), "dev/x"));
  EXPECT_FALSE(acl.can_publish(user("ok", ""), "dev/"));
  // Other rules still apply to them.
  EXPECT_TRUE(acl.can_read(user("a/b", "c/x"), "open/x"));
  // and a safe name works.
  EXPECT_TRUE(acl.can_read(user("a", "d"), "app/a/x"));
  EXPECT_TRUE(acl.can_publish(user("a", "d"), "dev/d"));
}

TEST(Acl, DenyPatternWithUnsafeSubstitutionDeniesEverything) {
  Acl acl = parse_ok("topic readwrite #\npattern deny private/%u/#\n");
  EXPECT_TRUE(acl.can_publish(user("alice"), "x"));
  EXPECT_FALSE(acl.can_publish(user("alice"), "private/alice/x"));
  EXPECT_TRUE(acl.can_publish(user("alice"), "private/bob/x"));
  EXPECT_FALSE(acl.can_subscribe(user("alice"), "private/alice/#"));
  EXPECT_TRUE(acl.can_subscribe(user("alice"), "private/#"));  // not wholly denied
  EXPECT_FALSE(acl.can_read(user("alice"), "private/alice/y"));
  EXPECT_TRUE(acl.can_publish(kAnon, "private/x"));  // %u: does not apply to anonymous
  for (std::string_view bad : {"+", "#", "a/b", ""}) {
    EXPECT_FALSE(acl.can_publish(user(bad), "x")) << bad;
    EXPECT_FALSE(acl.can_read(user(bad), "x")) << bad;
    EXPECT_FALSE(acl.can_subscribe(user(bad), "#")) << bad;
  }
}

TEST(Acl, DenyWins) {
  // Whatever the order of the lines and wherever the rules are.
  for (std::string_view text :
       {"topic readwrite a/#\ntopic deny a/secret\n", "topic deny a/secret\ntopic readwrite a/#\n",
        "topic deny a/secret\nuser alice\ntopic readwrite a/#\n",
        "pattern deny a/secret\nuser alice\ntopic readwrite a/#\n",
        "user alice\ntopic readwrite a/#\ntopic deny a/secret\n",
        "user alice\ntopic readwrite a/#\npattern deny a/%u\n"}) {
    Acl acl = parse_ok(text);
    const AclClient alice = user("alice", "secret");
    EXPECT_TRUE(acl.can_publish(alice, "a/x")) << text;
    EXPECT_TRUE(acl.can_read(alice, "a/x")) << text;
    const char* denied = text.find("%u") != std::string_view::npos ? "a/alice" : "a/secret";
    EXPECT_FALSE(acl.can_publish(alice, denied)) << text;
    EXPECT_FALSE(acl.can_read(alice, denied)) << text;
    EXPECT_FALSE(acl.can_subscribe(alice, denied)) << text;
    EXPECT_TRUE(acl.can_subscribe(alice, "a/#")) << text;  // partly denied: allowed
    EXPECT_TRUE(acl.can_subscribe(alice, "a/+")) << text;
  }
  // A deny with wildcards refuses every subscription it covers.
  Acl acl = parse_ok("topic readwrite #\ntopic deny test/#\n");
  EXPECT_FALSE(acl.can_subscribe(kAnon, "test/#"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "test/+"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "test"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "test/a/b"));
  EXPECT_TRUE(acl.can_subscribe(kAnon, "+/a"));  // covers also x/a
  EXPECT_TRUE(acl.can_subscribe(kAnon, "#"));
  EXPECT_FALSE(acl.can_read(kAnon, "test/a"));
  EXPECT_FALSE(acl.can_read(kAnon, "test"));
  EXPECT_TRUE(acl.can_read(kAnon, "testing"));
}

TEST(Acl, SubscribeCoverage) {
  Acl acl = parse_ok(
      "topic read sensors/+/temp\n"
      "topic write cmd/#\n"
      "topic read a/x\n"
      "topic read a/y\n"
      "topic readwrite home/#\n");
  EXPECT_TRUE(acl.can_subscribe(kAnon, "sensors/+/temp"));
  EXPECT_TRUE(acl.can_subscribe(kAnon, "sensors/a/temp"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "sensors/#"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "sensors/+/+"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "#"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "cmd/#"));  // write-only: no subscribe
  EXPECT_FALSE(acl.can_subscribe(kAnon, "cmd/x"));
  EXPECT_TRUE(acl.can_publish(kAnon, "cmd/x"));
  EXPECT_FALSE(acl.can_publish(kAnon, "sensors/a/temp"));  // read-only: no publish
  EXPECT_TRUE(acl.can_subscribe(kAnon, "a/x"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "a/+"));  // two rules together do not count
  EXPECT_TRUE(acl.can_subscribe(kAnon, "home"));  // home/# matches "home" itself
  EXPECT_TRUE(acl.can_subscribe(kAnon, "home/#"));
  EXPECT_TRUE(acl.can_subscribe(kAnon, "home/+/light"));
  EXPECT_TRUE(acl.can_subscribe(kAnon, "$share/workers/home/+"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "$share/workers/sensors/#"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "$share/wo+rkers/home/x"));
}

TEST(Acl, DefaultRules) {
  Acl acl = Acl::default_rules();
  EXPECT_EQ(acl.rule_count(), 2u);
  const AclClient alice = user("alice", "phone");
  EXPECT_TRUE(acl.can_publish(alice, "app/alice/x"));
  EXPECT_TRUE(acl.can_read(alice, "app/alice/x/y"));
  EXPECT_TRUE(acl.can_subscribe(alice, "app/alice/#"));
  EXPECT_TRUE(acl.can_subscribe(alice, "app/alice"));
  EXPECT_FALSE(acl.can_publish(alice, "app/bob/x"));
  EXPECT_FALSE(acl.can_read(alice, "app/bob/x"));
  EXPECT_FALSE(acl.can_subscribe(alice, "app/+/x"));
  EXPECT_FALSE(acl.can_subscribe(alice, "app/#"));
  EXPECT_TRUE(acl.can_read(alice, "app/public/news"));
  EXPECT_TRUE(acl.can_subscribe(alice, "app/public/#"));
  EXPECT_FALSE(acl.can_publish(alice, "app/public/news"));
  EXPECT_FALSE(acl.can_publish(alice, "user/alice/inbox/bob"));  // IM rules are the broker's
  EXPECT_FALSE(acl.can_subscribe(alice, "#"));
  // A user called "public" owns app/public/#, as the pattern says.
  EXPECT_TRUE(acl.can_publish(user("public"), "app/public/news"));
  // Anonymous: nothing.
  EXPECT_FALSE(acl.can_read(kAnon, "app/public/news"));
  EXPECT_FALSE(acl.can_subscribe(kAnon, "app/public/#"));
  EXPECT_FALSE(acl.can_publish(kAnon, "app/anon-client/x"));
  // Unsafe usernames get no own tree.
  EXPECT_FALSE(acl.can_publish(user("alice/x"), "app/alice/x/y"));
  EXPECT_FALSE(acl.can_subscribe(user("#"), "app/#"));
  EXPECT_TRUE(acl.can_read(user("alice/x"), "app/public/news"));
}

}  // namespace
