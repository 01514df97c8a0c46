#include "base/json_parse.h"

#include <emmintrin.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/json_escape.h"
#include "base/utf8.h"

namespace cove {
namespace {

using json = nlohmann::json;

class Parser {
 public:
  Parser(std::string_view s, int max_depth) : p_(s.data()), end_(s.data() + s.size()), max_depth_(max_depth) {}

  bool ParseDocument(json* out) {
    if (!Value(out, 0)) return false;
    Ws();
    return p_ == end_;
  }

 private:
  void Ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  bool Literal(const char* lit, size_t n) {
    if (static_cast<size_t>(end_ - p_) < n || std::string_view(p_, n) != std::string_view(lit, n)) return false;
    p_ += n;
    return true;
  }

  bool Value(json* out, int depth) {
    if (depth > max_depth_) return false;
    Ws();
    if (p_ == end_) return false;
    switch (*p_) {
      case '{': return Object(out, depth);
      case '[': return Array(out, depth);
      case '"': {
        std::string s;
        if (!String(&s)) return false;
        *out = std::move(s);
        return true;
      }
      case 't':
        *out = true;
        return Literal("true", 4);
      case 'f':
        *out = false;
        return Literal("false", 5);
      case 'n':
        *out = nullptr;
        return Literal("null", 4);
      default: return Number(out);
    }
  }

  bool Object(json* out, int depth) {
    ++p_;  // '{'
    *out = json::object();
    Ws();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    for (;;) {
      Ws();
      if (p_ == end_ || *p_ != '"') return false;
      std::string key;
      if (!String(&key)) return false;
      Ws();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      json v;
      if (!Value(&v, depth + 1)) return false;
      (*out)[std::move(key)] = std::move(v);
      Ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == '}') {
        ++p_;
        return true;
      }
      return false;
    }
  }

  bool Array(json* out, int depth) {
    ++p_;  // '['
    *out = json::array();
    Ws();
    if (p_ < end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    for (;;) {
      json v;
      if (!Value(&v, depth + 1)) return false;
      out->push_back(std::move(v));
      Ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == ']') {
        ++p_;
        return true;
      }
      return false;
    }
  }

  static int Hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Four hex digits at p (before end) into *out.
  static bool Hex4(const char* p, const char* end, unsigned* out) {
    if (end - p < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      int h = Hex(p[i]);
      if (h < 0) return false;
      v = v << 4 | static_cast<unsigned>(h);
    }
    *out = v;
    return true;
  }

  static char* PutUtf8(unsigned cp, char* o) {
    if (cp < 0x80) {
      *o++ = static_cast<char>(cp);
    } else if (cp < 0x800) {
      *o++ = static_cast<char>(0xC0 | (cp >> 6));
      *o++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *o++ = static_cast<char>(0xE0 | (cp >> 12));
      *o++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *o++ = static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *o++ = static_cast<char>(0xF0 | (cp >> 18));
      *o++ = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *o++ = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *o++ = static_cast<char>(0x80 | (cp & 0x3F));
    }
    return o;
  }

  // A string in three passes over its bytes, each 16 bytes a step (SSE2): find
  // the closing quote (refusing raw control characters), validate the UTF-8
  // of the raw bytes (escapes are ASCII, so that is the text's validity), then
  // copy with the escapes decoded into a result sized once.
  bool String(std::string* out) {
    ++p_;  // '"'
    const char* q = nullptr;
    bool escaped = false, non_ascii = false;
    if (!Scan(&q, &escaped, &non_ascii)) return false;
    std::string_view raw(p_, static_cast<size_t>(q - p_));
    if (non_ascii && !IsValidUtf8(raw)) return false;
    if (!escaped) {
      out->assign(raw);
      p_ = q + 1;
      return true;
    }
    out->resize(raw.size() + 16);  // escapes only shrink; 16 bytes for the last block's store
    char* o = out->data();
    const char* p = p_;
    const __m128i backslash = _mm_set1_epi8('\\');
    while (p < q) {
      if (q - p >= 16) {
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o), v);
        unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, backslash)));
        if (mask == 0) {
          p += 16;
          o += 16;
          continue;
        }
        unsigned k = static_cast<unsigned>(__builtin_ctz(mask));
        p += k;
        o += k;
      } else if (*p != '\\') {
        *o++ = *p++;
        continue;
      }
      ++p;  // '\\'; Scan saw the byte after it before q
      char e = *p++;
      if (char d = json_escape::kUnescaped[static_cast<unsigned char>(e)]) {
        *o++ = d;
        continue;
      }
      switch (e) {
        case 'u': {
          unsigned cp;
          if (!Hex4(p, q, &cp)) return false;
          p += 4;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (q - p < 2 || p[0] != '\\' || p[1] != 'u') return false;
            p += 2;
            if (!Hex4(p, q, &lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            p += 4;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          o = PutUtf8(cp, o);
          break;
        }
        default: return false;
      }
    }
    out->resize(static_cast<size_t>(o - out->data()));
    p_ = q + 1;
    return true;
  }

  // From p_ (after an opening quote): *q = the closing quote; *escaped: a
  // backslash came before it; *non_ascii: a byte >= 0x80 may have. False for a
  // raw control character or no closing quote.
  bool Scan(const char** q, bool* escaped, bool* non_ascii) const {
    const char* p = p_;
    __m128i high = _mm_setzero_si128();
    for (;;) {
      char c;
      if (end_ - p >= 16) {
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        high = _mm_or_si128(high, v);  // bytes past the quote may count: only a hint
        unsigned mask = json_escape::MustEscapeMask(v);
        if (mask == 0) {
          p += 16;
          continue;
        }
        p += __builtin_ctz(mask);
        c = *p;
      } else {
        if (p >= end_) return false;
        c = *p;
        if (static_cast<unsigned char>(c) >= 0x80) *non_ascii = true;
        if (c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20) {
          ++p;
          continue;
        }
      }
      if (c == '"') break;
      if (c != '\\') return false;  // raw control character
      *escaped = true;
      if (end_ - p < 2 || static_cast<unsigned char>(p[1]) < 0x20) return false;
      p += 2;
    }
    if (_mm_movemask_epi8(high)) *non_ascii = true;
    *q = p;
    return true;
  }

  bool Number(json* out) {
    const char* start = p_;
    bool is_float = false;
    if (p_ < end_ && *p_ == '-') ++p_;
    if (p_ == end_) return false;
    if (*p_ == '0') {
      ++p_;
    } else if (*p_ >= '1' && *p_ <= '9') {
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    } else {
      return false;
    }
    if (p_ < end_ && *p_ == '.') {
      is_float = true;
      ++p_;
      if (p_ == end_ || *p_ < '0' || *p_ > '9') return false;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      is_float = true;
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (p_ == end_ || *p_ < '0' || *p_ > '9') return false;
      while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    }
    if (!is_float) {
      if (*start == '-') {
        int64_t v;
        auto [ptr, ec] = std::from_chars(start, p_, v);
        if (ec == std::errc() && ptr == p_) {
          *out = v;
          return true;
        }
      } else {
        uint64_t v;
        auto [ptr, ec] = std::from_chars(start, p_, v);
        if (ec == std::errc() && ptr == p_) {
          *out = v;
          return true;
        }
      }
    }
    std::string num(start, p_);
    double d = std::strtod(num.c_str(), nullptr);
    if (!std::isfinite(d)) return false;  // like nlohmann: out of range
    *out = d;
    return true;
  }

  const char* p_;
  const char* end_;
  int max_depth_;
};

}  // namespace

std::optional<nlohmann::json> ParseJson(std::string_view text, int max_depth) {
  json out;
  Parser p(text, max_depth);
  if (!p.ParseDocument(&out)) return std::nullopt;
  return out;
}

}  // namespace cove
