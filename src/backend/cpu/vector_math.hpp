// In-place exponential / logarithm of a double array with glibc's vector math library (libmvec: AVX-512 /
// AVX2 variants, <= 4 ulp), chosen at run time; scalar std::exp where libmvec or the ISA is
// missing. The softmax of the logistic loss spends most of its scalar time here.
#pragma once

#include <cstdint>

namespace spmdlearn::cpu {
void exp_inplace(double* x, std::int64_t n) noexcept;
void log_inplace(double* x, std::int64_t n) noexcept;
}
