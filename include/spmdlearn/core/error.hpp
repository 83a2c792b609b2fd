// Error types of spmdlearn.
//
// Every error carries a kind (which maps to a Python exception type: invalid_argument -> ValueError,
// out_of_memory -> MemoryError, not_implemented -> NotImplementedError, runtime -> RuntimeError,
// type_error -> TypeError, invalid_parameter -> InvalidParameterError) and,
// once it has been agreed collectively, the rank that failed first. A collective call that fails on
// one rank throws the *same* error on every rank (see core/guard.hpp).
#pragma once

#include <stdexcept>
#include <string>

namespace spmdlearn {

enum class error_kind : int {
  none = 0,
  invalid_argument = 1,  // bad input or parameters  (Python: ValueError)
  out_of_memory = 2,     // host or device allocation (Python: MemoryError)
  not_implemented = 3,   // valid but unsupported     (Python: NotImplementedError)
  runtime = 4,           // anything else             (Python: RuntimeError)
  type_error = 5,        // input of the wrong type   (Python: TypeError)
  invalid_parameter = 6, // a bad estimator parameter (Python: sklearn's InvalidParameterError)
};

class error : public std::runtime_error {
 public:
  error(error_kind kind, const std::string& message, int rank = -1)
      : std::runtime_error(message), kind_(kind), rank_(rank) {}
  error_kind kind() const noexcept { return kind_; }
  // The rank on which the failure happened, or -1 when it was raised before any agreement.
  int rank() const noexcept { return rank_; }

 private:
  error_kind kind_;
  int rank_;
};

struct invalid_argument : error {
  explicit invalid_argument(const std::string& m, int rank = -1)
      : error(error_kind::invalid_argument, m, rank) {}
};
struct out_of_memory : error {
  explicit out_of_memory(const std::string& m, int rank = -1)
      : error(error_kind::out_of_memory, m, rank) {}
};
struct not_implemented : error {
  explicit not_implemented(const std::string& m, int rank = -1)
      : error(error_kind::not_implemented, m, rank) {}
};
struct type_error : error {
  explicit type_error(const std::string& m, int rank = -1) : error(error_kind::type_error, m, rank) {}
};
struct invalid_parameter : error {
  explicit invalid_parameter(const std::string& m, int rank = -1)
      : error(error_kind::invalid_parameter, m, rank) {}
};
struct runtime_error : error {
  explicit runtime_error(const std::string& m, int rank = -1)
      : error(error_kind::runtime, m, rank) {}
};

// Builds the error object of the given kind (used to re-throw an agreed error on every rank).
[[noreturn]] void throw_error(error_kind kind, const std::string& message, int rank);

// Classifies any exception (spmdlearn::error, std::bad_alloc, std::exception, unknown).
error_kind classify(const std::exception_ptr& e, std::string& message);

}  // namespace spmdlearn
