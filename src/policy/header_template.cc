// Header templates: "{{secret.NAME}}" references (header_template.h).
#include "policy/header_template.h"

namespace cove::proxy {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool ValidSecretName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

Result<std::string> ExpandHeaderTemplate(std::string_view tmpl,
                                         const std::function<Result<std::string>(std::string_view name)>& value_of) {
  std::string out;
  size_t pos = 0;
  while (pos < tmpl.size()) {
    size_t open = tmpl.find("{{", pos);
    if (open == std::string_view::npos) {
      out.append(tmpl.substr(pos));
      break;
    }
    out.append(tmpl.substr(pos, open - pos));
    size_t close = tmpl.find("}}", open + 2);
    if (close == std::string_view::npos)
      return MakeError(ErrorCode::kInvalidArgument, "unterminated {{ in a header template");
    std::string_view ref = Trim(tmpl.substr(open + 2, close - open - 2));
    constexpr std::string_view kPrefix = "secret.";
    if (ref.substr(0, kPrefix.size()) != kPrefix || !ValidSecretName(ref.substr(kPrefix.size())))
      return MakeError(ErrorCode::kInvalidArgument, "header templates name {{secret.NAME}}, not {{" + std::string(ref) + "}}");
    std::string_view name = ref.substr(kPrefix.size());
    auto value = value_of(name);
    if (!value.ok()) return std::move(value).error();
    out.append(*value);
    pos = close + 2;
  }
  return out;
}

}  // namespace cove::proxy
