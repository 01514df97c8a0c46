// Error and Result<T>: the error convention of every cove layer.
//
// An Error carries a portable code, the errno that caused it (0 if none), a
// message for humans, and optional key/value context. Functions that can fail
// return Status (Result<void>) or Result<T>; exceptions never cross our layers.
#pragma once

#include <cerrno>
#include <map>
#include <string>
#include <utility>
#include <variant>

namespace cove {

enum class ErrorCode {
  kInvalidArgument,    // caller's input is wrong
  kNotFound,           // named thing does not exist
  kAlreadyExists,      // named thing exists already
  kPermissionDenied,   // not allowed
  kResourceExhausted,  // a limit was hit (size, count, quota)
  kFailedPrecondition, // state does not allow the operation
  kUnavailable,        // peer not ready or gone; may succeed later
  kTimeout,            // a bounded wait expired
  kCancelled,          // the caller gave up
  kInternal,           // a bug or an unexpected system failure
};

const char* ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  int sys_errno = 0;
  std::string message;
  std::map<std::string, std::string> context;

  // "message: strerror(errno)" when an errno is set.
  std::string ToString() const;

  Error&& With(std::string key, std::string value) && {
    context[std::move(key)] = std::move(value);
    return std::move(*this);
  }
};

inline Error MakeError(ErrorCode code, std::string message) {
  return Error{code, 0, std::move(message), {}};
}
// An error from a failed system call; reads errno now.
Error SysError(std::string what);
Error SysError(std::string what, int err);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { return error_; }
  Error&& error() && { return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;
inline Status OkStatus() { return {}; }

}  // namespace cove

#define COVE_CONCAT_INNER(a, b) a##b
#define COVE_CONCAT(a, b) COVE_CONCAT_INNER(a, b)

// Returns the error of a failed Status/Result from the enclosing function.
#define COVE_TRY(expr)                                   \
  do {                                                   \
    auto&& cove_try_r = (expr);                          \
    if (!cove_try_r.ok()) return std::move(cove_try_r).error(); \
  } while (0)

// auto x = value of a Result, or return its error.
#define COVE_ASSIGN_OR_RETURN(lhs, expr) \
  COVE_ASSIGN_OR_RETURN_IMPL(COVE_CONCAT(cove_r_, __LINE__), lhs, expr)
#define COVE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return std::move(tmp).error();    \
  lhs = std::move(tmp).value()
