// Host-side interface of the CUDA parts of PCA's `full` (TSQR) and `randomized` solvers; needs no
// CUDA headers. The small factorisations and the merges across ranks stay on the host
// (src/decomposition/pca.cpp); what is linear in the rows runs here, on the GPU that holds them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace spmdlearn::cuda {

// R of the QR factorisation of the centred rows X - mean of a device matrix (n x d, row stride
// `stride`): d x d, column-major, upper triangle (rows at and below min(n, d) are zero).
// Chunks of centred doubles are stacked under the running R and refactorised by cuSOLVER
// (dgeqrf) -- one rank's part of the TSQR, never forming XᵀX.
template <class T>
std::vector<double> centred_r(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride,
                              const std::vector<double>& mean);

// The device half of the randomized range finder: A = X - mean (n x d, column-major doubles) on
// X's GPU and a basis Y (n x l) there. Products whose output is small (d x l, l x l) are summed
// over 1024-row batches by a strided-batched gemm and a fixed-order reduction in double: one gemm
// with a long k and a tiny output would leave most of the GPU idle.
class range_finder {
 public:
  template <class T>
  range_finder(const T* X, std::int64_t n, std::int64_t d, std::int64_t stride, const std::vector<double>& mean);
  ~range_finder();
  range_finder(const range_finder&) = delete;
  range_finder& operator=(const range_finder&) = delete;
  double sum_squares();                                      // Σ A²
  void set_basis(const std::vector<double>& M, int l);       // Y = A M (M: d x l, column-major)
  std::vector<double> basis_gram();                          // Yᵀ Y (l x l, column-major)
  void basis_solve_upper(const std::vector<double>& R);      // Y <- Y R⁻¹ (R: l x l upper)
  std::vector<double> project();                             // Aᵀ Y (d x l, column-major)

 private:
  struct impl;
  std::unique_ptr<impl> p_;  // null on a rank without rows: its products are zero
  std::int64_t d_ = 0;
  int l_ = 0;
};

}  // namespace spmdlearn::cuda
