#include "base/shell_quote.h"

#include <gtest/gtest.h>

namespace cove {
namespace {

TEST(ShellQuoteTest, PlainWordsStayBare) {
  EXPECT_EQ(ShellQuote("ls"), "ls");
  EXPECT_EQ(ShellQuote("-la"), "-la");
  EXPECT_EQ(ShellQuote("/a/b.txt"), "/a/b.txt");
  EXPECT_EQ(ShellQuote("K=V"), "K=V");
}

TEST(ShellQuoteTest, EverythingElseIsSingleQuoted) {
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("a b"), "'a b'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote("$HOME"), "'$HOME'");
  EXPECT_EQ(ShellQuote("~"), "'~'");
  EXPECT_EQ(ShellQuote("$(rm -rf /) `x` \"y\" \\ \n"), "'$(rm -rf /) `x` \"y\" \\ \n'");
  EXPECT_EQ(ShellQuote("\xC3\xA9"), "'\xC3\xA9'");
}

TEST(ShellNameTest, LettersDigitsAndUnderscoresNotLeadingDigits) {
  EXPECT_TRUE(IsShellName("PATH"));
  EXPECT_TRUE(IsShellName("_a1"));
  EXPECT_FALSE(IsShellName("1a"));
  EXPECT_FALSE(IsShellName("A-B"));
  EXPECT_FALSE(IsShellName("A=B"));
  EXPECT_FALSE(IsShellName(""));
}

}  // namespace
}  // namespace cove
