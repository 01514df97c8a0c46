// The vector paths of base/utf8 and base/json_parse (long inputs: blocks of
// 16 and 32 bytes, sequences across block edges) against independent references.
#include "base/utf8.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>
#include <string>

#include "base/json_parse.h"

namespace cove {
namespace {

// RFC 3629 validity, one code point at a time (the test's own reading of it).
bool RefValid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = cp << 6 | (b & 0x3F);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Every sequence of one to three bytes from a set that covers each boundary
// of the rules, at every offset around the 16- and 32-byte block edges.
TEST(Utf8Vector, ValidatorAgreesOnShortSequencesAtEveryOffset) {
  const unsigned char edges[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                                 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
  std::vector<std::string> seqs;
  for (unsigned char a : edges) {
    seqs.push_back(std::string(1, static_cast<char>(a)));
    for (unsigned char b : edges) {
      seqs.push_back({static_cast<char>(a), static_cast<char>(b)});
      for (unsigned char c : {0x41, 0x80, 0x9F, 0xA0, 0xBF, 0xC2})
        seqs.push_back({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)});
    }
  }
  const std::string valid4[] = {"\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF", "\xF3\xBF\xBF\xBF"};
  const std::string invalid4[] = {"\xF0\x8F\xBF\xBF", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xF0\x90\x80"};
  for (const auto& v : valid4) seqs.push_back(v);
  for (const auto& v : invalid4) seqs.push_back(v);
  for (const std::string& seq : seqs) {
    for (size_t at : {0, 1, 13, 14, 15, 16, 29, 30, 31, 32, 33, 61, 62, 63}) {
      std::string s = std::string(at, 'a') + seq + std::string(40, 'b');
      ASSERT_EQ(IsValidUtf8(s), RefValid(s)) << "offset " << at << " seq " << nlohmann::json(s).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
      std::string end = std::string(at, 'a') + seq;  // at the very end (the tail block)
      ASSERT_EQ(IsValidUtf8(end), RefValid(end)) << "at end, offset " << at;
    }
  }
}

TEST(Utf8Vector, ValidatorAgreesOnRandomText) {
  std::mt19937 rng(7);
  const std::string pieces[] = {"a", "\"", "\\", "\n", "\xC3\xA9", "\xE2\x88\x91", "\xF0\x9F\xA6\x8A", "\x01"};
  for (int round = 0; round < 3000; ++round) {
    std::string s;
    size_t n = rng() % 300;
    while (s.size() < n) s += pieces[rng() % 8];
    if (round % 2 && !s.empty()) s[rng() % s.size()] = static_cast<char>(rng());  // likely a fault
    ASSERT_EQ(IsValidUtf8(s), RefValid(s)) << round;
  }
}

// Valid text escapes as nlohmann escapes it; the parser reads back what was escaped.
TEST(Utf8Vector, LongTextEscapesAndParsesBack) {
  std::mt19937 rng(3);
  const std::string pieces[] = {"plain text of some length ", "\"", "\\", "\n", "\t", "\x01", "\x1F", "\x7F",
                                "\xC3\xA9", "\xE2\x88\x91", "\xF0\x9F\xA6\x8A", "/"};
  for (int round = 0; round < 300; ++round) {
    std::string s;
    size_t n = rng() % 5000;
    while (s.size() < n) s += pieces[rng() % 12];
    std::string mine;
    AppendJsonUtf8(s, &mine);
    std::string ref = nlohmann::json(s).dump();
    ASSERT_EQ("\"" + mine + "\"", ref) << round;
    auto back = ParseJson(ref);
    ASSERT_TRUE(back.has_value()) << round;
    ASSERT_EQ(back->get<std::string>(), s) << round;
    // With \u escapes for everything non-ASCII (nlohmann's ensure_ascii), and in a document.
    std::string ascii = nlohmann::json{{"k", s}, {"n", 1}}.dump(-1, ' ', true);
    auto doc = ParseJson(ascii);
    ASSERT_TRUE(doc.has_value()) << round;
    ASSERT_EQ((*doc)["k"].get<std::string>(), s) << round;
  }
}

TEST(Utf8Vector, ParserRefusesFaultsInLongStrings) {
  std::string body(100, 'x');
  for (size_t at : {0, 15, 16, 17, 40, 99}) {
    for (std::string bad : {std::string("\n"), std::string("\xFF"), std::string("\\x"), std::string("\\u12G4"),
                            std::string("\\ud800"), std::string("\xE2\x82"), std::string(1, '\0')}) {
      std::string s = "\"" + body.substr(0, at) + bad + body.substr(at) + "\"";
      EXPECT_FALSE(ParseJson(s).has_value()) << at << " " << nlohmann::json(bad).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
    }
    std::string unterminated = "\"" + body.substr(0, at) + "\\\"";
    EXPECT_FALSE(ParseJson(unterminated).has_value()) << at;
  }
  EXPECT_EQ(ParseJson("\"" + body + "\\\\\"")->get<std::string>(), body + "\\");  // an escaped backslash before the quote
}

// Invalid text takes the repairing path: the result is the same whatever the
// length and however it is split into chunks.
TEST(Utf8Vector, RepairIsTheSameInLongInputsAndStreams) {
  std::string s;
  for (int i = 0; i < 200; ++i) s += (i % 7 == 3) ? std::string("\xE2\x82") : std::string("ok \xC3\xA9 \"q\" ");
  std::string whole;
  AppendJsonUtf8(s, &whole);
  std::string pieces;
  for (size_t i = 0; i < s.size();) {
    // Cut at ASCII only, so that each piece repairs as the whole does.
    size_t end = std::min(s.size(), i + 37);
    while (end < s.size() && static_cast<unsigned char>(s[end]) >= 0x80) ++end;
    AppendJsonUtf8(std::string_view(s).substr(i, end - i), &pieces);
    i = end;
  }
  EXPECT_EQ(whole, pieces);
  for (size_t cut : {1, 7, 16, 33, 64, 500}) {
    Utf8JsonStream st;
    std::string out;
    for (size_t i = 0; i < s.size(); i += cut) st.Append(std::string_view(s).substr(i, cut), &out);
    st.Finish(&out);
    EXPECT_EQ(out, whole) << cut;
  }
  EXPECT_FALSE(IsText(s));
  EXPECT_TRUE(IsText(std::string(100, 'a') + "\xF0\x9F\xA6\x8A"));
  EXPECT_FALSE(IsText(std::string(100, 'a') + std::string(1, '\0')));
}

}  // namespace
}  // namespace cove
