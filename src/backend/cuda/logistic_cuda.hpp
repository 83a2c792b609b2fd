// Host-side interface of the CUDA logistic-regression objective (the local part: this rank's
// rows on its GPU). No CUDA headers needed.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace spmdlearn::cuda {

// Local sums over the rows of a device matrix X (n x d, row stride `stride`) with class indices y
// (int32, device) and weights w (device, or null), for K' = kp coefficient rows laid out as
// θ = [w_k (d) | b_k (if icpt)] per row (host vectors):
//   loss_grad: acc[0] += Σ sw loss_i, acc[1 + k*cols + j] += Σ sw r_ik x_ij (+ intercept column)
//   hess_vec:  acc[k*cols + j] += Σ sw t_ik x_ij with t the Hessian's action on v (at the θ of the
//              last loss_grad, whose probabilities stay on the device)
// Chunks of rows in double: cuBLAS dgemm for X Wᵀ and Rᵀ X, a kernel per row for the softmax /
// sigmoid, the loss and the residuals; all sums in a fixed order (bitwise reproducible).
class logistic_local {
 public:
  virtual ~logistic_local() = default;
  virtual void loss_grad(const std::vector<double>& theta, std::vector<double>& acc) = 0;
  virtual void hess_vec(const std::vector<double>& v, std::vector<double>& acc) = 0;
};

template <class T>
std::unique_ptr<logistic_local> make_logistic_local(const T* X, std::int64_t n, std::int64_t d,
                                                    std::int64_t stride, const std::int32_t* y,
                                                    const T* w, std::int64_t kp, bool icpt);

// Throws invalid_argument if a device label is outside [0, n_classes) or a device weight is
// negative or not finite.
template <class T>
void check_labels_weights(const std::int32_t* y, const T* w, std::int64_t n, std::int64_t n_classes);

}  // namespace spmdlearn::cuda
