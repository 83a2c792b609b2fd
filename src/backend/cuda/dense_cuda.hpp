// Small dense factorisations (d x d, host matrices in and out) by cuSOLVER on the current GPU.
// Why: a fit whose rows are on GPUs ends with a d x d eigen-decomposition, QR or SVD; the host's
// LAPACK may be slow (the reference LAPACK of a GPU machine took ~0.25 s for a 256 x 256 eigh,
// 50x the GPU work of the fit) and the GPU is there. See src/backend/dense.hpp for the dispatch.
#pragma once

#include <vector>

namespace spmdlearn::cuda {

// Each throws detail::throw_factorization_error's error when cuSOLVER reports a failure
// (`matrix` names the matrix in the message).
// As cpu::eigh: eigenvalues ascending; a (n x n, column-major) overwritten by the eigenvectors
// when `vectors`.
std::vector<double> eigh(std::vector<double>& a, int n, bool vectors, const char* matrix);
// In place QR of the m x n column-major a (lda): the upper triangle of the top min(m, n) rows
// holds R afterwards (below it: Householder vectors, as LAPACK).
void geqrf(int m, int n, double* a, int lda, const char* matrix);
// Singular values s (descending) and Vᵀ (n x n, column-major) of the n x n matrix a (destroyed).
void svd_square(std::vector<double>& a, int n, std::vector<double>& s, std::vector<double>& vt, const char* matrix);

}  // namespace spmdlearn::cuda
