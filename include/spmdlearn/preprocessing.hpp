// Distributed StandardScaler and MaxAbsScaler (scikit-learn's), built on the statistics state.
//
// fit / partial_fit are collective (every rank merges its block into the replicated state);
// transform / inverse_transform are local. Attributes follow scikit-learn:
//   standard: mean = Σ w x / W, var = Σ w (x - mean)² / W (ddof = 0),
//             scale = √var, with 1 for constant features (scikit-learn's tolerance) and NaN
//             where var overflows (inf: deviations beyond ~1e154);
//   max-abs:  max_abs = max |x|, scale = max_abs (1 where it is 0).
//
//   spmdlearn::preprocessing::standard_scaler sc;
//   sc.fit(*world, X);  sc.transform(X, out);
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "spmdlearn/basic_statistics.hpp"

namespace spmdlearn::preprocessing {

struct standard_scaler_params {
  bool with_mean = true;
  bool with_std = true;
};

struct standard_scaler_result {
  std::vector<double> mean;   // empty unless with_mean or with_std
  std::vector<double> var;    // empty unless with_std
  std::vector<double> scale;  // empty unless with_std
};
standard_scaler_result standard_scaler_finalize(const basic_statistics::state& s,
                                                const standard_scaler_params& p);

struct max_abs_scaler_result {
  std::vector<double> max_abs;
  std::vector<double> scale;
};
// t: the data's dtype; scales below 10·eps(t) are treated as zero (scale 1), as scikit-learn.
max_abs_scaler_result max_abs_scaler_finalize(const basic_statistics::state& s,
                                              dtype t = dtype::float64);

// out = X * a + b per column (the scalers' transform and inverse transform), local. Runs on the
// device that holds X: host views on the CPU, CUDA views on their GPU (out must live with X and be
// contiguous). Throws invalid_argument for NaN/inf in X.
template <class T>
void scale_columns(matrix_view<const T> X, matrix_view<T> out, std::span<const double> a,
                   std::span<const double> b);

class standard_scaler {
 public:
  explicit standard_scaler(standard_scaler_params p = {}) : params_(p) {}
  template <class T>
  void partial_fit(const comm& c, matrix_view<const T> X,
                   std::optional<vector_view<const T>> w = std::nullopt) {
    basic_statistics::partial_fit(c, state_, X, w, "StandardScaler");
    result_ = standard_scaler_finalize(state_, params_);
  }
  template <class T>
  void fit(const comm& c, matrix_view<const T> X,
           std::optional<vector_view<const T>> w = std::nullopt) {
    state_ = {};
    partial_fit(c, X, w);
  }
  // out may alias X.
  template <class T>
  void transform(matrix_view<const T> X, matrix_view<T> out) const;
  template <class T>
  void inverse_transform(matrix_view<const T> X, matrix_view<T> out) const;
  const standard_scaler_result& result() const { return result_; }
  const basic_statistics::state& state() const { return state_; }

 private:
  standard_scaler_params params_;
  basic_statistics::state state_;
  standard_scaler_result result_;
};

class max_abs_scaler {
 public:
  template <class T>
  void partial_fit(const comm& c, matrix_view<const T> X) {
    basic_statistics::partial_fit(c, state_, X, std::optional<vector_view<const T>>{}, "MaxAbsScaler");
    result_ = max_abs_scaler_finalize(state_, dtype_of<T>());
  }
  template <class T>
  void fit(const comm& c, matrix_view<const T> X) {
    state_ = {};
    partial_fit(c, X);
  }
  template <class T>
  void transform(matrix_view<const T> X, matrix_view<T> out) const;
  template <class T>
  void inverse_transform(matrix_view<const T> X, matrix_view<T> out) const;
  const max_abs_scaler_result& result() const { return result_; }
  const basic_statistics::state& state() const { return state_; }

 private:
  basic_statistics::state state_;
  max_abs_scaler_result result_;
};

}  // namespace spmdlearn::preprocessing
