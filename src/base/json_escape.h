// The escapes of JSON strings (RFC 8259 §7) as tables and one vector test,
// shared by the writer (utf8.cc: AppendJsonUtf8) and the parser (json_parse.cc).
#pragma once

#include <emmintrin.h>

#include <array>

namespace cove::json_escape {

// The letter after the backslash that escapes byte c, for the bytes a JSON
// string must escape ('"', '\\' and control characters); 'u' means \u00XX.
// 0 for the bytes that stand for themselves.
inline constexpr std::array<char, 256> kLetter = [] {
  std::array<char, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = 'u';
  t['"'] = '"';
  t['\\'] = '\\';
  t['\n'] = 'n';
  t['\r'] = 'r';
  t['\t'] = 't';
  t['\b'] = 'b';
  t['\f'] = 'f';
  return t;
}();

// What "\e" stands for, by e: the inverse of kLetter, and '/' (which may be
// escaped, never must). 0 for 'u' and for letters that are no escape.
inline constexpr std::array<char, 256> kUnescaped = [] {
  std::array<char, 256> t{};
  for (int c = 0; c < 256; ++c)
    if (char l = kLetter[c]; l != 0 && l != 'u') t[static_cast<unsigned char>(l)] = static_cast<char>(c);
  t['/'] = '/';
  return t;
}();

// Bit i set for each byte i of v that a JSON string must escape (SSE2).
inline unsigned MustEscapeMask(__m128i v) {
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), control = _mm_set1_epi8(0x1F);
  __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                 _mm_cmpeq_epi8(_mm_min_epu8(v, control), v));
  return static_cast<unsigned>(_mm_movemask_epi8(special));
}

}  // namespace cove::json_escape
