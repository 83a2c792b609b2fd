#include "core/factorization_error.hpp"

#include <string>
#include <string_view>

#include "spmdlearn/core/error.hpp"

namespace spmdlearn::detail {

void throw_factorization_error(const char* routine, int info, std::int64_t rows, std::int64_t cols,
                               const char* matrix) {
  const std::string_view r(routine);
  auto is = [&](std::string_view k) { return r.find(k) != std::string_view::npos; };
  const char* operation = is("syevd")   ? "symmetric eigen-decomposition"
                          : is("potrf") ? "Cholesky factorisation"
                          : is("geqrf") ? "QR factorisation"
                          : is("gesvd") ? "singular value decomposition"
                                        : "factorisation";
  std::string m = std::string(routine) + " (" + operation + ") failed on the " + std::to_string(rows) + " x " +
                  std::to_string(cols) + " " + matrix + ": ";
  if (info < 0)
    throw runtime_error(m + "argument " + std::to_string(-info) +
                        " was invalid (an internal error of spmdlearn; please report it)");
  if (is("potrf"))
    m += "the leading minor of order " + std::to_string(info) + " is not positive definite";
  else
    m += "the iteration did not converge (info=" + std::to_string(info) + ")";
  throw invalid_argument(m +
                         ". This happens when the matrix holds non-finite values or values near the "
                         "limits of the float64 range: scale your features (e.g. StandardScaler, or "
                         "divide large columns by a power of ten), and check for constant or "
                         "duplicated columns");
}

}  // namespace spmdlearn::detail
