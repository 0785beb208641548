#include "base/utf8.hpp"

#include <gtest/gtest.h>

namespace converge {
namespace {

TEST(Utf8, ValidAndInvalid) {
  EXPECT_TRUE(utf8_valid(""));
  EXPECT_TRUE(utf8_valid("plain ascii, longer than eight bytes"));
  EXPECT_TRUE(utf8_valid("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"));  // é € 😀
  EXPECT_TRUE(utf8_valid("\xF4\x8F\xBF\xBF"));                            // U+10FFFF
  EXPECT_FALSE(utf8_valid("\xFF\xFE.txt"));
  EXPECT_FALSE(utf8_valid("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(utf8_valid("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(utf8_valid("\xED\xA0\x80"));      // U+D800
  EXPECT_FALSE(utf8_valid("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(utf8_valid("abc\xC3"));           // truncated
  EXPECT_FALSE(utf8_valid("abcdefgh\x80"));      // lone continuation after the fast path
}

TEST(Utf8, RepairReplacesMaximalSubparts) {
  EXPECT_EQ(utf8_repair("\xFF\xFE.txt"), "\xEF\xBF\xBD\xEF\xBF\xBD.txt");
  EXPECT_EQ(utf8_repair("a\xE2\x82z"), "a\xEF\xBF\xBDz");  // one U+FFFD for a cut sequence
  EXPECT_EQ(utf8_repair("ok \xC3\xA9"), "ok \xC3\xA9");
  EXPECT_TRUE(utf8_valid(utf8_repair("\xED\xA0\x80\xF0\x9F\x98")));
}

TEST(Utf8, TruncateOnABoundary) {
  std::string s = "\xC3\xA9\xC3\xA9\xC3\xA9";  // 6 bytes, 3 characters
  EXPECT_EQ(utf8_truncate(s, 6), s);
  EXPECT_EQ(utf8_truncate(s, 5), "\xC3\xA9\xC3\xA9");
  EXPECT_EQ(utf8_truncate(s, 1), "");
  EXPECT_EQ(utf8_truncate("abc", 2), "ab");
}

TEST(Utf8, IncrementalAgreesWithWhole) {
  const std::string cases[] = {"h\xC3\xA9llo", "\xF0\x9F\x98\x80", "\xED\xA0\x80", "\xC3",
                               "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80"};
  for (const auto& s : cases)
    for (std::size_t cut = 0; cut <= s.size(); ++cut) {
      Utf8Validator v;
      v.feed(std::string_view(s).substr(0, cut));
      v.feed(std::string_view(s).substr(cut));
      EXPECT_EQ(v.complete(), utf8_valid(s)) << "cut at " << cut;
    }
  Utf8Validator early;
  EXPECT_FALSE(early.feed("\xED\xA0"));  // a surrogate is refused before the message ends
}

}  // namespace
}  // namespace converge
