#include "http/http_head.h"

#include <algorithm>
#include <cstring>

#include "base/ascii.h"
#include "http/hop_by_hop.h"

namespace cove::http {
namespace {

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Error Bad(const std::string& why) { return MakeError(ErrorCode::kInvalidArgument, why); }

// Splits the head into lines (without CR LF); false on a bare CR.
bool SplitLines(std::string_view head, std::vector<std::string_view>* lines) {
  while (!head.empty()) {
    size_t lf = head.find('\n');
    if (lf == std::string_view::npos) return false;
    std::string_view line = head.substr(0, lf);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos) return false;
    head.remove_prefix(lf + 1);
    if (line.empty()) break;
    lines->push_back(line);
  }
  return true;
}

Status ParseHeaders(const std::vector<std::string_view>& lines, HttpHead* out) {
  if (lines.size() > 200) return Bad("too many header fields");
  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line[0] == ' ' || line[0] == '\t') return Bad("obsolete line folding");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return Bad("header line without a name");
    std::string_view name = line.substr(0, colon);
    for (char c : name)
      if (!IsTokenChar(c)) return Bad("bad header name");
    std::string_view value = Trim(line.substr(colon + 1));
    for (char c : value)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return Bad("control character in a header");
    out->headers.emplace_back(std::string(name), std::string(value));
  }
  return OkStatus();
}

bool ParseVersion(std::string_view v, int* minor) {
  if (v.size() != 8 || v.substr(0, 7) != "HTTP/1." || v[7] < '0' || v[7] > '9') return false;
  *minor = v[7] - '0';
  return true;
}

Result<uint64_t> ContentLength(const HttpHead& head) {
  std::string first;
  bool seen = false;
  for (const auto& [k, v] : head.headers) {
    if (!AsciiIEquals(k, "content-length")) continue;
    if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos)
      return Bad("bad Content-Length");
    if (seen && v != first) return Bad("conflicting Content-Length headers");
    first = v;
    seen = true;
  }
  return std::stoull(first);
}

}  // namespace

std::string HttpHead::Get(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (AsciiIEquals(k, name)) return v;
  return {};
}

bool HttpHead::Has(std::string_view name) const { return Count(name) > 0; }

size_t HttpHead::Count(std::string_view name) const {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(), [&](const auto& h) { return AsciiIEquals(h.first, name); }));
}

void HttpHead::Remove(std::string_view name) {
  std::erase_if(headers, [&](const auto& h) { return AsciiIEquals(h.first, name); });
}

bool HttpHead::HasToken(std::string_view name, std::string_view token) const {
  for (const auto& [k, v] : headers) {
    if (!AsciiIEquals(k, name)) continue;
    std::string_view rest = v;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      if (AsciiIEquals(Trim(rest.substr(0, comma)), token)) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

std::string HttpHead::SerializeRequest() const {
  std::string out = method + " " + target + " HTTP/1." + std::to_string(version_minor) + "\r\n";
  for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
  out += "\r\n";
  return out;
}

std::string HttpHead::SerializeResponse() const {
  std::string out = "HTTP/1." + std::to_string(version_minor) + " " + std::to_string(status) + " " + reason + "\r\n";
  for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
  out += "\r\n";
  return out;
}

size_t FindHeadEnd(std::string_view buf) {
  for (size_t i = buf.find('\n'); i != std::string_view::npos; i = buf.find('\n', i + 1)) {
    if (i + 1 < buf.size() && buf[i + 1] == '\n') return i + 2;
    if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
  }
  return 0;
}

Result<HttpHead> ParseRequestHead(std::string_view text) {
  // Tolerate empty lines before the request line (RFC 9112 §2.2).
  while (text.starts_with("\r\n") || text.starts_with("\n")) text.remove_prefix(text[0] == '\r' ? 2 : 1);
  std::vector<std::string_view> lines;
  if (!SplitLines(text, &lines) || lines.empty()) return Bad("malformed request head");
  HttpHead head;
  std::string_view line = lines[0];
  size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1) return Bad("malformed request line");
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (method.empty()) return Bad("empty method");
  for (char c : method)
    if (!IsTokenChar(c)) return Bad("bad method");
  if (target.empty()) return Bad("empty target");
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return Bad("bad request target");
  if (!ParseVersion(line.substr(sp2 + 1), &head.version_minor)) return Bad("unsupported HTTP version");
  head.method = std::string(method);
  head.target = std::string(target);
  COVE_TRY(ParseHeaders(lines, &head));
  return head;
}

Result<HttpHead> ParseResponseHead(std::string_view text) {
  std::vector<std::string_view> lines;
  if (!SplitLines(text, &lines) || lines.empty()) return Bad("malformed response head");
  HttpHead head;
  std::string_view line = lines[0];
  if (line.size() < 12 || !ParseVersion(line.substr(0, 8), &head.version_minor) || line[8] != ' ')
    return Bad("malformed status line");
  std::string_view code = line.substr(9, 3);
  if (code.find_first_not_of("0123456789") != std::string_view::npos || (line.size() > 12 && line[12] != ' '))
    return Bad("malformed status code");
  head.status = std::stoi(std::string(code));
  if (head.status < 100) return Bad("malformed status code");
  head.reason = line.size() > 13 ? std::string(line.substr(13)) : "";
  for (char c : head.reason)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return Bad("control character in reason");
  COVE_TRY(ParseHeaders(lines, &head));
  return head;
}

Result<Framing> RequestFraming(const HttpHead& head) {
  Framing f;
  if (head.Has("transfer-encoding")) {
    if (head.Has("content-length")) return Bad("both Transfer-Encoding and Content-Length");
    // RFC 9112 §6.1: an HTTP/1.0 request's framing is then faulty.
    if (head.version_minor == 0) return Bad("Transfer-Encoding in an HTTP/1.0 request");
    if (head.Count("transfer-encoding") != 1 || !AsciiIEquals(Trim(head.Get("transfer-encoding")), "chunked"))
      return Bad("unsupported Transfer-Encoding");
    f.kind = BodyKind::kChunked;
    return f;
  }
  if (head.Has("content-length")) {
    // Even equal ones: a server behind may take a list for an error, or the last.
    if (head.Count("content-length") != 1) return Bad("more than one Content-Length");
    COVE_ASSIGN_OR_RETURN(f.length, ContentLength(head));
    f.kind = f.length ? BodyKind::kLength : BodyKind::kNone;
  }
  return f;
}

Result<Framing> ResponseFraming(const HttpHead& head, std::string_view request_method) {
  Framing f;
  if (head.status < 200 || head.status == 204 || head.status == 304 || AsciiIEquals(request_method, "HEAD")) return f;
  if (AsciiIEquals(request_method, "CONNECT") && head.status < 300) return Bad("CONNECT is not relayed");
  if (head.Has("transfer-encoding")) {
    // The final coding decides; anything else is read until the server closes.
    std::string te;
    for (const auto& [k, v] : head.headers)
      if (AsciiIEquals(k, "transfer-encoding")) te = v;
    std::string_view last = te;
    if (size_t comma = last.rfind(','); comma != std::string_view::npos) last = last.substr(comma + 1);
    f.kind = AsciiIEquals(Trim(last), "chunked") ? BodyKind::kChunked : BodyKind::kUntilClose;
    return f;
  }
  if (head.Has("content-length")) {
    COVE_ASSIGN_OR_RETURN(f.length, ContentLength(head));
    f.kind = f.length ? BodyKind::kLength : BodyKind::kNone;
    return f;
  }
  f.kind = BodyKind::kUntilClose;
  return f;
}

bool KeepAlive(const HttpHead& head) {
  if (head.HasToken("connection", "close")) return false;
  if (head.version_minor == 0) return head.HasToken("connection", "keep-alive");
  return true;
}

void StripHopByHop(HttpHead& head, bool keep_upgrade) {
  std::vector<std::string> named;
  for (const auto& [k, v] : head.headers) {
    if (!AsciiIEquals(k, "connection")) continue;
    std::string_view rest = v;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      std::string_view t = Trim(rest.substr(0, comma));
      if (!t.empty()) named.emplace_back(t);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  for (const auto& n : named)
    if (ConnectionMayDrop(n) && !(keep_upgrade && AsciiIEquals(n, "upgrade"))) head.Remove(n);
  for (std::string_view h : kHopByHopFields)
    if (!(keep_upgrade && h == "upgrade")) head.Remove(h);
  if (keep_upgrade) head.Add("Connection", "Upgrade");
}

}  // namespace cove::http
