// Small propagation macros for absl::Status / absl::StatusOr, which the Abseil
// in Debian 12 (20220623) does not ship yet. Header-only; usable from any
// thread.
#ifndef BENCHFLEET_COMMON_STATUS_MACROS_H_
#define BENCHFLEET_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define BF_CONCAT_INNER_(a, b) a##b
#define BF_CONCAT_(a, b) BF_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::absl::Status bf_status_ = (expr);      \
    if (!bf_status_.ok()) return bf_status_; \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates the absl::StatusOr `expr`; on error
// returns its status, otherwise moves the value into `lhs` (which may be a
// declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  BF_ASSIGN_OR_RETURN_IMPL_(BF_CONCAT_(bf_statusor_, __LINE__), lhs, expr)
#define BF_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()

#endif  // BENCHFLEET_COMMON_STATUS_MACROS_H_
