#include "agent/ops.h"

#include <type_traits>

#include "agent/limits.h"
#include "base/shell_quote.h"

namespace cove::agent {
namespace {

template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};

// Writes every field that has a value.
struct Writer {
  Json* out;
  template <class T>
  void operator()(const char* key, const T& value, Rule = kAnyValue) {
    if constexpr (IsOptional<T>::value) {
      if (value) (*out)[key] = *value;
    } else {
      (*out)[key] = value;
    }
  }
};

// Reads fields strictly; keeps the first problem.
class Reader {
 public:
  explicit Reader(const Json& object) : o_(object) {}

  template <class T>
  void operator()(const char* key, T& value, Rule rule = kAnyValue) {
    if (!problem_.empty()) return;
    auto it = o_.find(key);
    bool absent = it == o_.end() || it->is_null();
    if constexpr (IsOptional<T>::value) {
      if (absent) {
        value.reset();
        return;
      }
      typename T::value_type v{};
      if (Read(key, *it, &v, rule)) value = std::move(v);
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!absent) Read(key, *it, &value, rule);
    } else {
      if (absent) {
        problem_ = std::string("missing field '") + key + "'";
        field_ = key;
        return;
      }
      Read(key, *it, &value, rule);
    }
  }

  const std::string& problem() const { return problem_; }
  // The key of the field with the problem.
  const char* field() const { return field_; }

 private:
  bool Fail(const char* key, const std::string& what) {
    problem_ = std::string("field '") + key + "' must be " + what;
    field_ = key;
    return false;
  }

  bool Read(const char* key, const Json& j, bool* out, Rule) {
    if (!j.is_boolean()) return Fail(key, "a boolean");
    *out = j.get<bool>();
    return true;
  }

  bool Read(const char* key, const Json& j, int64_t* out, Rule rule) {
    bool in_range = j.is_number_integer() &&
                    (j.is_number_unsigned() ? j.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX) : true);
    int64_t v = in_range ? j.get<int64_t>() : 0;
    if (rule.kind == Rule::kRange) {
      if (!in_range || v < rule.lo || v > rule.hi)
        return Fail(key, "an integer from " + std::to_string(rule.lo) + " to " + std::to_string(rule.hi));
    } else if (!in_range) {
      return Fail(key, "an integer");
    }
    *out = v;
    return true;
  }

  bool Read(const char* key, const Json& j, std::string* out, Rule rule) {
    if (!j.is_string()) return Fail(key, "a string");
    const auto& s = j.get_ref<const std::string&>();
    bool nul = s.find('\0') != std::string::npos;
    switch (rule.kind) {
      case Rule::kId:
        if (s.empty() || s.size() > 256 || nul) return Fail(key, "an id of 1-256 bytes without NUL");
        break;
      case Rule::kPath:
        if (s.empty() || nul) return Fail(key, "a non-empty path without NUL");
        break;
      case Rule::kCommand:
        if (s.empty() || nul) return Fail(key, "a non-empty command without NUL");
        if (auto why = CommandSizeProblem(s.size()); !why.empty()) {
          problem_ = why;
          field_ = key;
          return false;
        }
        break;
      case Rule::kOneOf: {
        std::string names;
        for (size_t i = 0; i < rule.option_count; ++i) {
          if (s == rule.options[i]) {
            *out = s;
            return true;
          }
          names += (i ? ", '" : "'") + std::string(rule.options[i]) + "'";
        }
        return Fail(key, "one of " + names);
      }
      default: break;
    }
    *out = s;
    return true;
  }

  // Names are shell names; values are strings without NUL.
  bool Read(const char* key, const Json& j, EnvVars* out, Rule) {
    if (!j.is_object()) return Fail(key, "an object of strings");
    for (const auto& [name, value] : j.items()) {
      if (!IsShellName(name)) return Fail(key, "an object of variables ('" + name + "' is not a variable name)");
      if (!value.is_string() || value.get_ref<const std::string&>().find('\0') != std::string::npos)
        return Fail(key, "an object of strings without NUL (the value of '" + name + "' is not)");
      (*out)[name] = value.get<std::string>();
    }
    return true;
  }

  bool Read(const char* key, const Json& j, Strings* out, Rule) {
    if (!j.is_array()) return Fail(key, "a list of strings");
    for (const auto& value : j) {
      if (!value.is_string()) return Fail(key, "a list of strings");
      out->push_back(value.get<std::string>());
    }
    return true;
  }

  const Json& o_;
  std::string problem_;
  const char* field_ = "";
};

// A reply or event of shape T (its Fields), read strictly.
template <class T>
Result<T> ParseShape(const Json& j, const char* what) {
  if (!j.is_object()) return MakeError(ErrorCode::kInvalidArgument, std::string(what) + " is not a JSON object");
  T out;
  Reader r(j);
  T::Fields(out, r);
  if (!r.problem().empty()) return MakeError(ErrorCode::kInvalidArgument, std::string(what) + ": " + r.problem());
  return out;
}

}  // namespace

template <class Op>
Json ToJson(const Op& op) {
  Json out = {{"op", Op::kOp}};
  Writer w{&out};
  Op::Fields(op, w);
  return out;
}

Json ToJson(const AnyOp& op) {
  return std::visit([](const auto& o) { return ToJson(o); }, op);
}

template <class Op>
Result<Op> ParseOp(const Json& request) {
  if (!request.is_object()) return MakeError(ErrorCode::kInvalidArgument, "a request must be a JSON object");
  auto name = request.find("op");
  if (name == request.end() || !name->is_string() || name->get_ref<const std::string&>() != Op::kOp)
    return MakeError(ErrorCode::kInvalidArgument, "the request is not a " + std::string(Op::kOp) + " op");
  Op op;
  Reader r(request);
  Op::Fields(op, r);
  if (!r.problem().empty()) return MakeError(ErrorCode::kInvalidArgument, r.problem()).With("field", r.field());
  return op;
}

// Every op of AnyOp (checked below).
#define COVE_EACH_OP(X) \
  X(HelloOp) X(ExecOp) X(SessionCreateOp) X(SessionDeleteOp) X(SessionListOp) X(FileReadOp) \
  X(FileWriteOp) X(FileDeleteOp) X(FileExistsOp) X(FileRenameOp) X(FileMoveOp) \
  X(FileMkdirOp) X(FileListOp) X(ProcessStartOp) X(ProcessListOp) X(ProcessGetOp) \
  X(ProcessLogsOp) X(ProcessStreamOp) X(ProcessKillOp) X(ProcessKillAllOp) X(ProcessCleanupOp) \
  X(PortWatchOp) X(FsWatchOp) X(FsCheckOp) X(PtyAttachOp) X(PtyResizeOp) \
  X(ContextHealthOp) X(ContextListOp) X(ContextCreateOp) X(ContextRunOp) X(ContextGetOp) \
  X(ContextRestartOp) X(ContextInterruptOp) X(ContextDeleteOp)
#define COVE_INSTANTIATE(Op) \
  template Json ToJson<Op>(const Op&); \
  template Result<Op> ParseOp<Op>(const Json&);
COVE_EACH_OP(COVE_INSTANTIATE)
#undef COVE_INSTANTIATE
#define COVE_COUNT(Op) +1
static_assert(0 COVE_EACH_OP(COVE_COUNT) == std::variant_size_v<AnyOp>, "every op is instantiated");
#undef COVE_COUNT
#undef COVE_EACH_OP

namespace {

template <size_t I = 0>
Result<AnyOp> ParseAlternative(const Json& request, std::string_view name) {
  if constexpr (I == std::variant_size_v<AnyOp>) {
    return MakeError(ErrorCode::kInvalidArgument, "unknown op '" + std::string(name) + "'").With("op", std::string(name));
  } else {
    using Op = std::variant_alternative_t<I, AnyOp>;
    if (name != Op::kOp) return ParseAlternative<I + 1>(request, name);
    auto op = ParseOp<Op>(request);
    if (!op.ok()) return std::move(op).error();
    return AnyOp(std::move(*op));
  }
}

}  // namespace

Result<AnyOp> ParseAnyOp(const Json& request) {
  if (!request.is_object()) return MakeError(ErrorCode::kInvalidArgument, "a request must be a JSON object");
  auto name = request.find("op");
  if (name == request.end() || !name->is_string())
    return MakeError(ErrorCode::kInvalidArgument, "missing field 'op'").With("field", "op");
  return ParseAlternative(request, name->get_ref<const std::string&>());
}

std::string_view OpName(const AnyOp& op) {
  return std::visit([](const auto& o) { return std::string_view(std::decay_t<decltype(o)>::kOp); }, op);
}

std::string_view TypeOf(const Json& message) {
  if (!message.is_object()) return {};
  auto it = message.find("type");
  return it != message.end() && it->is_string() ? std::string_view(it->get_ref<const std::string&>())
                                                : std::string_view();
}

Result<OutputEvent> ParseOutputEvent(const Json& event) {
  std::string_view type = TypeOf(event);
  if (type != "stdout" && type != "stderr")
    return MakeError(ErrorCode::kInvalidArgument, "an output event must be of type stdout or stderr");
  auto data = event.find("data");
  if (data == event.end() || !data->is_string())
    return MakeError(ErrorCode::kInvalidArgument, "an output event's data must be a string");
  return OutputEvent{type == "stderr", data->get<std::string>()};
}

Result<ExecReply> ParseExecReply(const Json& reply) { return ParseShape<ExecReply>(reply, "the exec reply"); }
Result<FileMetadata> ParseFileMetadata(const Json& event) {
  return ParseShape<FileMetadata>(event, "the file metadata");
}
Result<ProcessInfo> ParseProcessInfo(const Json& process) {
  return ParseShape<ProcessInfo>(process, "the process record");
}
Result<ProcessStartReply> ParseProcessStartReply(const Json& reply) {
  return ParseShape<ProcessStartReply>(reply, "the process.start reply");
}
Result<ContextInfo> ParseContextInfo(const Json& context) {
  return ParseShape<ContextInfo>(context, "the context record");
}

}  // namespace cove::agent
