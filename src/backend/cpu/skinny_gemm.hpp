// Products whose shapes OpenBLAS runs far below the core's peak, by AVX-512 when the CPU has it
// (chosen at run time; otherwise the caller uses BLAS).
//
// 1. The two products of the multinomial logistic loss with few classes:
//   logits:   R (nb x K, row-major) = X Θᵀ            (X: nb x d, row stride lx; Θ: K rows, stride ld)
//   gradient: G (K rows, stride ld) += Rᵀ X
// Why by hand: with K = 2..8 columns OpenBLAS's dgemm runs these at ~12 GFLOP/s on the 2-core Xeon
// VM (1M x 50, 5 classes: 39.5 ms an evaluation a rank, against 31.2 ms here; the first product
// streams X from memory, the second rereads the chunk from L2). One 8-lane vector holds a row's K
// values: four rows share each load of Θ's column (logits) or of G's row (gradient). With K = 1
// (binary) BLAS is faster (17.7 vs 31 ms) and stays in use.
#pragma once

#include <cstdint>

namespace spmdlearn::cpu {

// True when the kernels below may run (AVX-512F present) for K classes (2 <= K <= 8).
bool skinny_gemm_available(std::int64_t K) noexcept;

// `scratch` holds 8 d doubles (Θ transposed and padded, or G's 8-lane rows).
void skinny_logits(std::int64_t nb, std::int64_t d, std::int64_t K, const double* X, std::int64_t lx,
                   const double* theta, std::int64_t ld, double* R, double* scratch) noexcept;
void skinny_gradient(std::int64_t nb, std::int64_t d, std::int64_t K, const double* X, std::int64_t lx,
                     const double* R, double* G, std::int64_t ld, double* scratch) noexcept;

// 2. The Gram matrix of a chunk of rows with few columns (the normal equations' and covariance's
//    Σ z zᵀ): S (p x p, column-major, upper triangle S[a + b p], a <= b) += Zᵀ Z for Z (nb x p,
//    row-major) -- dsyrk("U", "N")'s contract. Tiles of 8 x 24 entries of S in 24 registers,
//    walking the chunk's rows (L2-resident), from the diagonal block rightwards.
//    Why by hand: OpenBLAS dsyrk runs p = 101 at 36-40 GFLOP/s (n p² counted) on the 2-core Xeon
//    VM, 45% of its dgemm peak; these tiles take 0.18 s against dsyrk's 0.24 s for 1M x 101 rows,
//    0.073 vs 0.122 s at p = 64, and are no faster beyond p ~ 200 (so p <= 128 only).
//    Single-threaded: used only when BLAS runs one thread in this process (else BLAS's threads win).
bool gram_kernel_available(std::int64_t p) noexcept;
void gram_upper_acc(std::int64_t nb, std::int64_t p, const double* Z, double* S) noexcept;

}  // namespace spmdlearn::cpu
