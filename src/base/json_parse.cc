#include "base/json_parse.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

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

  bool Hex4(unsigned* out) {
    if (end_ - p_ < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      int h = Hex(p_[i]);
      if (h < 0) return false;
      v = v << 4 | static_cast<unsigned>(h);
    }
    p_ += 4;
    *out = v;
    return true;
  }

  static void PutUtf8(unsigned cp, std::string* s) {
    if (cp < 0x80) {
      s->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      s->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      s->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      s->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      s->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  bool String(std::string* out) {
    ++p_;  // '"'
    // Size the result once: up to the closing quote (escapes only shrink).
    const char* q = ClosingQuote(p_);
    if (q >= end_) return false;
    out->reserve(static_cast<size_t>(q - p_));
    for (;;) {
      const char* run = p_;
      p_ = RunEnd(p_);
      if (p_ > run) {
        std::string_view seg(run, static_cast<size_t>(p_ - run));
        if (!IsValidUtf8(seg)) return false;
        out->append(seg);
      }
      if (p_ == end_) return false;
      char c = *p_++;
      if (c == '"') return true;
      if (c != '\\') return false;  // raw control character
      if (p_ == end_) return false;
      char e = *p_++;
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          unsigned cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
            p_ += 2;
            if (!Hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          PutUtf8(cp, out);
          break;
        }
        default: return false;
      }
    }
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

  // End of the run from p of string bytes that need no decoding (no '"',
  // '\\' or control character), 8 bytes at a time.
  const char* RunEnd(const char* p) const {
    constexpr uint64_t kOnes = 0x0101010101010101ull, kHighs = 0x8080808080808080ull;
    auto zero = [](uint64_t w) { return (w - kOnes) & ~w & kHighs; };
    for (; end_ - p >= 8; p += 8) {
      uint64_t w;
      memcpy(&w, p, 8);
      // No false negatives; false positives only above a real hit (the byte loop is exact).
      if (zero(w ^ (kOnes * '"')) | zero(w ^ (kOnes * '\\')) | ((w - kOnes * 0x20) & ~w & kHighs)) break;
    }
    while (p < end_ && *p != '"' && *p != '\\' && static_cast<unsigned char>(*p) >= 0x20) ++p;
    return p;
  }

  // The closing quote of the string starting at p (after its opening quote), or end_.
  const char* ClosingQuote(const char* p) const {
    for (;;) {
      auto q = static_cast<const char*>(memchr(p, '"', static_cast<size_t>(end_ - p)));
      if (!q) return end_;
      const char* b = q;
      while (b > p && b[-1] == '\\') --b;
      if ((q - b) % 2 == 0) return q;  // not escaped
      p = q + 1;
    }
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
