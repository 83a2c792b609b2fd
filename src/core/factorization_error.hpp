// The error of a dense factorisation (LAPACK or cuSOLVER) that failed: it names the routine, the
// matrix, what the routine's `info` means and what the user can do about it. A failure with
// info > 0 comes from the data (non-finite entries, or entries near the float64 range): it is an
// invalid_argument (Python ValueError, as numpy's LinAlgError); info < 0 is an internal error.
// Factorisations of replicated matrices fail identically on every rank; their collective callers
// agree on the failure (core/guard.hpp), which adds the rank to the message.
#pragma once

#include <cstdint>

namespace spmdlearn::detail {

// routine: "dsyevd", "dpotrf", "dgeqrf", "dgesvd" or a cuSOLVER name ("cusolverDnDsyevd"...);
// matrix: what was factorised, for the message ("normal-equations matrix X^T X").
[[noreturn]] void throw_factorization_error(const char* routine, int info, std::int64_t rows,
                                            std::int64_t cols, const char* matrix);

}  // namespace spmdlearn::detail
