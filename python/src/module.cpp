// spmdlearn._core: the nanobind bridge. Converts numpy arrays and mpi4py communicator addresses
// into spmdlearn views and comms, releases the GIL around every collective or long call, and maps
// spmdlearn errors to Python exceptions. No numerics here.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <vector>

#include "spmdlearn/spmdlearn.hpp"

namespace nb = nanobind;
using namespace nb::literals;
namespace sl = spmdlearn;

namespace {

template <class T>
using host_matrix = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
template <class T>
using host_vector = nb::ndarray<const T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using f64_array = nb::ndarray<nb::numpy, double>;

std::unique_ptr<sl::comm> comm_from(std::uintptr_t address) {
  if (address == 0) return sl::make_self_comm();
  return sl::make_mpi_comm(reinterpret_cast<const void*>(address));
}

template <class T>
sl::matrix_view<const T> view(const host_matrix<T>& a) {
  return {a.data(), static_cast<std::int64_t>(a.shape(0)), static_cast<std::int64_t>(a.shape(1))};
}
template <class T>
std::optional<sl::vector_view<const T>> view(const std::optional<host_vector<T>>& a) {
  if (!a) return std::nullopt;
  return sl::vector_view<const T>{a->data(), static_cast<std::int64_t>(a->shape(0))};
}

// A numpy array that owns the vector's memory.
f64_array to_numpy(std::vector<double>&& v, std::initializer_list<std::size_t> shape) {
  auto* owner = new std::vector<double>(std::move(v));
  nb::capsule del(owner, [](void* p) noexcept { delete static_cast<std::vector<double>*>(p); });
  return f64_array(owner->data(), shape.size(), shape.begin(), del);
}
f64_array to_numpy(std::vector<double>&& v) {
  const std::size_t n = v.size();
  return to_numpy(std::move(v), {n});
}

// --- checked restores -----------------------------------------------------------------------------
// Model state comes back from Python as the user left it: unpickled, edited by hand, or taken from
// another model. The core indexes state arrays by the sizes the state declares, so an array of the
// wrong size would be read (or written) past its end. Every state dict is therefore read through
// state_reader, which checks each entry -- present, of the right type, arrays float64, C-contiguous,
// on the host, of exactly the shape the state's own counts imply -- before any pointer reaches the
// core; fitted attributes passed as arrays (centres, location, precision, initial coefficients) are
// checked by check_model_shape. Failures are invalid_argument (ValueError) naming the estimator and
// the attribute. The collective bindings capture them and hand them to their first agreement, so a
// state that is corrupt on one rank raises on every rank instead of leaving the others waiting.
std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

[[noreturn]] void corrupt_state(const std::string& who, const std::string& problem) {
  throw sl::invalid_argument(who + ": " + problem + "; the model state is corrupt or from another model");
}

std::string type_name_of(nb::handle h) { return nb::cast<std::string>(nb::type_name(h.type())); }

// str(x.dtype) of a numpy array (or the type's name when it has none), for messages.
std::string dtype_name_of(nb::handle h) {
  if (!nb::hasattr(h, "dtype")) return type_name_of(h);
  nb::object s = nb::steal(PyObject_Str(h.attr("dtype").ptr()));
  if (!s.is_valid()) {
    PyErr_Clear();
    return "?";
  }
  return nb::cast<std::string>(s);
}

// A fitted attribute passed as an array: `shape` -1 means any extent (checked elsewhere).
template <class Array>
void check_model_shape(const std::string& who, const char* name, const Array& a,
                       const std::vector<std::int64_t>& shape, const std::string& why) {
  std::vector<std::int64_t> got(a.ndim());
  for (std::size_t i = 0; i < a.ndim(); ++i) got[i] = static_cast<std::int64_t>(a.shape(i));
  bool ok = got.size() == shape.size();
  for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == got[i];
  if (!ok) {
    std::string want = "(";
    for (std::size_t i = 0; i < shape.size(); ++i)
      want += (i ? ", " : "") + (shape[i] < 0 ? std::string("any") : std::to_string(shape[i]));
    corrupt_state(who, std::string(name) + " has shape " + shape_text(got) + " but " + why +
                           " (expected " + want + (shape.size() == 1 ? ",)" : ")") + ")");
  }
}

// Reads one state dict (`name`, e.g. "_partial_state", of estimator `who`). Only invalid_argument
// leaves it: a Python error raised while reading is turned into one here, with the GIL held.
class state_reader {
 public:
  state_reader(nb::handle state, std::string who, std::string name)
      : d_(state), who_(std::move(who)), name_(std::move(name)) {
    if (!nb::isinstance<nb::dict>(state))
      corrupt_state(who_, name_ + " is a " + type_name_of(state) + ", expected a dict");
  }

  // A count: a Python or numpy integer (not a bool), 0 <= count <= max.
  std::int64_t count(const char* key, std::int64_t max = std::numeric_limits<std::int64_t>::max()) const {
    nb::handle h = get(key);
    if (PyBool_Check(h.ptr()) || !PyIndex_Check(h.ptr()))
      fail(key, "is a " + type_name_of(h) + ", expected a non-negative integer");
    const long long v = PyLong_AsLongLong(nb::steal(PyNumber_Index(h.ptr())).ptr());
    if (v == -1 && PyErr_Occurred()) {
      PyErr_Clear();
      fail(key, "does not fit in 64 bits");
    }
    if (v < 0) fail(key, "is " + std::to_string(v) + ", expected a non-negative integer");
    if (v > max) fail(key, "is " + std::to_string(v) + ", more than any array could hold");
    return static_cast<std::int64_t>(v);
  }

  // A sum of weights: a real number, finite and >= 0.
  double weight(const char* key) const {
    nb::handle h = get(key);
    double v = 0.0;
    if (PyBool_Check(h.ptr()) || PyComplex_Check(h.ptr()) || !nb::try_cast<double>(h, v))
      fail(key, "is a " + type_name_of(h) + ", expected a real number");
    if (!std::isfinite(v) || v < 0.0) fail(key, "is " + std::to_string(v) + ", expected a finite number >= 0");
    return v;
  }

  // A float64 host array of exactly `shape` (`why`: where the shape comes from, for the message).
  std::vector<double> array(const char* key, const std::vector<std::int64_t>& shape, const std::string& why) const {
    nb::handle h = get(key);
    nb::ndarray<nb::ro> a;
    if (!nb::try_cast(h, a, false)) {
      if (nb::hasattr(h, "dtype")) fail(key, "has dtype " + dtype_name_of(h) + ", expected float64");
      fail(key, "is a " + type_name_of(h) + ", expected a float64 array of shape " + shape_text(shape));
    }
    std::vector<std::int64_t> got(a.ndim());
    for (std::size_t i = 0; i < a.ndim(); ++i) got[i] = static_cast<std::int64_t>(a.shape(i));
    if (got != shape)
      fail(key, "has shape " + shape_text(got) + " but " + why + " (expected " + shape_text(shape) + ")");
    if (a.dtype() != nb::dtype<double>())
      fail(key, "has dtype " + dtype_name_of(h) + ", expected float64");
    if (a.device_type() != nb::device::cpu::value) fail(key, "is not in host memory");
    std::int64_t expect = 1;  // C-contiguous: each stride is the product of the later extents
    for (std::size_t i = a.ndim(); i-- > 0;) {
      if (got[i] > 1 && a.stride(i) != expect) fail(key, "is not C-contiguous");
      expect *= got[i];
    }
    const double* p = static_cast<const double*>(a.data());
    return std::vector<double>(p, p + a.size());
  }

 private:
  nb::handle get(const char* key) const {
    PyObject* v = PyDict_GetItemString(d_.ptr(), key);  // borrowed; no exception
    if (!v) fail(key, "is missing");
    return v;
  }
  [[noreturn]] void fail(const char* key, const std::string& problem) const {
    corrupt_state(who_, name_ + "['" + key + "'] " + problem);
  }

  nb::handle d_;
  std::string who_, name_;
};

// The largest extent a state may declare (sums of two cannot overflow).
constexpr std::int64_t max_extent = std::int64_t{1} << 40;

// The exception of fn(), if any, for a later agreement.
template <class F>
std::exception_ptr captured(F&& fn) {
  try {
    fn();
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

// A replicated step after a collective fit (a d x d factorisation, the same on every rank). With
// `collective`, every rank agrees on its success: a failure -- on every rank, or on one alone (a
// GPU out of memory) -- raises the same error on every rank, naming the rank. Without (an
// attribute computed on first read, which one rank may do alone), the error names this rank.
template <class F>
void replicated(std::uintptr_t comm, bool collective, F&& fn) {
  auto c = comm_from(comm);
  if (collective) return sl::guarded(*c, fn);
  try {
    fn();
  } catch (...) {
    std::string message;
    const sl::error_kind kind = sl::classify(std::current_exception(), message);
    sl::throw_error(kind, "rank " + std::to_string(c->rank()) + ": " + message, c->rank());
  }
}

// --- basic statistics state <-> dict -----------------------------------------------------------
// None (no state yet) gives the empty state.
sl::basic_statistics::state bs_state_from(nb::handle d, const std::string& who) {
  sl::basic_statistics::state s;
  if (d.is_none()) return s;
  const state_reader x(d, who, "_partial_state");
  s.n_features = x.count("n_features");
  s.n_rows = x.count("n_rows");
  s.weight_sum = x.weight("weight_sum");
  const std::string why = "the state has n_features=" + std::to_string(s.n_features);
  s.mean = x.array("mean", {s.n_features}, why);
  s.m2 = x.array("m2", {s.n_features}, why);
  s.min = x.array("min", {s.n_features}, why);
  s.max = x.array("max", {s.n_features}, why);
  return s;
}
nb::dict bs_state_to(sl::basic_statistics::state&& s) {
  nb::dict d;
  d["n_features"] = s.n_features;
  d["n_rows"] = s.n_rows;
  d["weight_sum"] = s.weight_sum;
  d["mean"] = to_numpy(std::move(s.mean));
  d["m2"] = to_numpy(std::move(s.m2));
  d["min"] = to_numpy(std::move(s.min));
  d["max"] = to_numpy(std::move(s.max));
  return d;
}

// device="cuda" with host data: one copy of X (and w) to this rank's GPU, then the GPU path. A
// failed copy (no CUDA, out of GPU memory) is kept in `err`: it must still reach the collective
// guard, so that every rank raises.
template <class T>
struct host_on_device {
  std::unique_ptr<sl::device_copy> x, w;
  std::exception_ptr err;
  host_on_device(const host_matrix<T>& X, const std::optional<host_vector<T>>& W) {
    try {
      x = std::make_unique<sl::device_copy>(X.data(), X.size() * sizeof(T));
      if (W) w = std::make_unique<sl::device_copy>(W->data(), W->size() * sizeof(T));
    } catch (...) {
      err = std::current_exception();
    }
  }
  sl::matrix_view<const T> view(const host_matrix<T>& X) const {
    return {static_cast<const T*>(x->data()), static_cast<std::int64_t>(X.shape(0)),
            static_cast<std::int64_t>(X.shape(1)), -1, sl::device_kind::cuda};
  }
};

template <class T>
nb::dict bs_partial_fit(std::uintptr_t comm, nb::object state, host_matrix<T> X,
                        std::optional<host_vector<T>> w, const std::string& caller,
                        bool to_device) {
  sl::basic_statistics::state s;
  const auto bad = captured([&] { s = bs_state_from(state, caller); });
  {
    nb::gil_scoped_release nogil;
    auto c = comm_from(comm);
    if (!to_device) {
      // Every variant of this call (host, device, host copied to the device) makes the same
      // collective calls -- one agreement on the local preparation, then partial_fit -- so ranks
      // may mix host and device blocks without falling out of step.
      sl::agree(*c, bad);
      sl::basic_statistics::partial_fit<T>(*c, s, view(X), view(w), caller.c_str());
    } else {
      host_on_device<T> h(X, w);
      sl::agree(*c, bad ? bad : h.err);
      std::optional<sl::vector_view<const T>> wv;
      if (w)
        wv = sl::vector_view<const T>{static_cast<const T*>(h.w->data()),
                                      static_cast<std::int64_t>(w->shape(0)), sl::device_kind::cuda};
      sl::basic_statistics::partial_fit<T>(*c, s, h.view(X), wv, caller.c_str());
    }
  }
  return bs_state_to(std::move(s));
}

// Device arrays (cupy, torch, anything with DLPack) are used in place. Rows may be padded (row
// stride >= n_features) but each row must be contiguous.
template <class T>
using cuda_matrix = nb::ndarray<const T, nb::ndim<2>, nb::device::cuda>;
template <class T>
using cuda_vector = nb::ndarray<const T, nb::ndim<1>, nb::device::cuda>;

// The view of a device array; throws invalid_argument when its rows are not contiguous.
template <class T, class Array>
sl::matrix_view<const T> device_view(const Array& X, const std::string& who) {
  const std::int64_t n = X.shape(0), d = X.shape(1);
  if (n > 0 && d > 1 && X.stride(1) != 1)
    throw sl::invalid_argument(who + ": the device array's rows are not contiguous (column stride " +
                               std::to_string(X.stride(1)) + "); pass a C-contiguous copy");
  if (n > 1 && X.stride(0) < d)
    throw sl::invalid_argument(who + ": the device array is not row-major; pass a C-contiguous copy");
  return {X.data(), n, d, n > 1 ? static_cast<std::int64_t>(X.stride(0)) : d, sl::device_kind::cuda};
}

// The view of a CUDA array after the collective agreement on it: a bad array (rows not
// contiguous) on one rank raises on every rank instead of leaving the others in a collective.
// `prior`: an error found before (a corrupt model state), agreed in the same call.
template <class T>
sl::matrix_view<const T> agreed_device_view(const sl::comm& c, const cuda_matrix<T>& X, const std::string& who,
                                            std::exception_ptr prior = nullptr) {
  std::exception_ptr err = prior;
  sl::matrix_view<const T> xv;
  if (!err) err = captured([&] { xv = device_view<T>(X, who); });
  sl::agree(c, err);
  return xv;
}

// Runs fn(comm, view) with the GIL released, after one agreement on the preparation: a host
// matrix as it is or copied to this rank's GPU (to_device), or a CUDA array in place. Every
// variant makes the same collective calls, so ranks may mix host and device blocks. `prior`: an
// error found before (a corrupt model state), raised on every rank by that agreement.
template <class T, class F>
void run_on_matrix(std::uintptr_t comm, const host_matrix<T>& X, bool to_device, F&& fn,
                   std::exception_ptr prior = nullptr) {
  nb::gil_scoped_release nogil;
  auto c = comm_from(comm);
  if (!to_device) {
    sl::agree(*c, prior);
    fn(*c, view(X));
  } else {
    host_on_device<T> h(X, std::nullopt);
    sl::agree(*c, prior ? prior : h.err);
    fn(*c, h.view(X));
  }
}
template <class T, class F>
void run_on_matrix(std::uintptr_t comm, const cuda_matrix<T>& X, const char* who, F&& fn,
                   std::exception_ptr prior = nullptr) {
  nb::gil_scoped_release nogil;
  auto c = comm_from(comm);
  fn(*c, agreed_device_view<T>(*c, X, who, prior));
}

template <class T>
nb::dict bs_partial_fit_cuda(std::uintptr_t comm, nb::object state, cuda_matrix<T> X,
                             std::optional<cuda_vector<T>> w, const std::string& caller, bool) {
  sl::basic_statistics::state s;
  const auto bad = captured([&] { s = bs_state_from(state, caller); });
  {
    nb::gil_scoped_release nogil;
    auto c = comm_from(comm);
    std::exception_ptr err = bad;
    sl::matrix_view<const T> xv;
    if (!err) err = captured([&] {
      xv = device_view<T>(X, caller);
      if (w && w->shape(0) > 1 && w->stride(0) != 1)
        throw sl::invalid_argument(caller + ": sample_weight on the device is not contiguous");
    });
    sl::agree(*c, err);
    std::optional<sl::vector_view<const T>> wv;
    if (w)
      wv = sl::vector_view<const T>{w->data(), static_cast<std::int64_t>(w->shape(0)),
                                    sl::device_kind::cuda};
    sl::basic_statistics::partial_fit<T>(*c, s, xv, wv, caller.c_str());
  }
  return bs_state_to(std::move(s));
}

nb::dict bs_finalize(nb::handle state, unsigned options) {
  auto r = sl::basic_statistics::finalize(bs_state_from(state, "BasicStatistics"), options);
  nb::dict d;
  auto put = [&](const char* name, std::vector<double>& v) {
    if (!v.empty() || r.n_features == 0) d[name] = to_numpy(std::move(v));
  };
  if (options & sl::basic_statistics::min) put("min", r.min);
  if (options & sl::basic_statistics::max) put("max", r.max);
  if (options & sl::basic_statistics::sum) put("sum", r.sum);
  if (options & sl::basic_statistics::mean) put("mean", r.mean);
  if (options & sl::basic_statistics::variance) put("variance", r.variance);
  if (options & sl::basic_statistics::standard_deviation) put("standard_deviation", r.standard_deviation);
  if (options & sl::basic_statistics::sum_squares) put("sum_squares", r.sum_squares);
  if (options & sl::basic_statistics::sum_squares_centered) put("sum_squares_centered", r.sum_squares_centered);
  if (options & sl::basic_statistics::second_order_raw_moment) put("second_order_raw_moment", r.second_order_raw_moment);
  if (options & sl::basic_statistics::variation) put("variation", r.variation);
  return d;
}

// --- covariance state <-> dict -----------------------------------------------------------------
sl::covariance::state cov_state_from(nb::handle d, const std::string& who) {
  sl::covariance::state s;
  if (d.is_none()) return s;
  const state_reader x(d, who, "_partial_state");
  s.n_features = x.count("n_features");
  s.n_rows = x.count("n_rows");
  const std::string why = "the state has n_features=" + std::to_string(s.n_features);
  s.mean = x.array("mean", {s.n_features}, why);
  s.cross = x.array("cross", {s.n_features, s.n_features}, why);
  return s;
}
nb::dict cov_state_to(sl::covariance::state&& s) {
  nb::dict d;
  const std::size_t n = static_cast<std::size_t>(s.n_features);
  d["n_features"] = s.n_features;
  d["n_rows"] = s.n_rows;
  d["mean"] = to_numpy(std::move(s.mean));
  d["cross"] = to_numpy(std::move(s.cross), {n, n});
  return d;
}

template <class T>
nb::dict cov_partial_fit(std::uintptr_t comm, nb::object state, host_matrix<T> X, bool to_device,
                         const std::string& caller) {
  sl::covariance::state s;
  const auto bad = captured([&] { s = cov_state_from(state, caller); });
  run_on_matrix<T>(comm, X, to_device, [&](const sl::comm& c, sl::matrix_view<const T> xv) {
    sl::covariance::partial_fit<T>(c, s, xv);
  }, bad);
  return cov_state_to(std::move(s));
}

template <class T>
nb::dict cov_partial_fit_cuda(std::uintptr_t comm, nb::object state, cuda_matrix<T> X, bool,
                              const std::string& caller) {
  sl::covariance::state s;
  const auto bad = captured([&] { s = cov_state_from(state, caller); });
  run_on_matrix<T>(comm, X, caller.c_str(), [&](const sl::comm& c, sl::matrix_view<const T> xv) {
    sl::covariance::partial_fit<T>(c, s, xv);
  }, bad);
  return cov_state_to(std::move(s));
}

nb::dict cov_finalize(nb::handle state, bool assume_centered, bool store_precision, bool float32,
                      std::uintptr_t comm) {
  auto s = cov_state_from(state, "EmpiricalCovariance");
  sl::covariance::result r;
  {
    nb::gil_scoped_release nogil;
    replicated(comm, true, [&] {
      r = sl::covariance::finalize(s, {assume_centered, store_precision},
                                   float32 ? sl::dtype::float32 : sl::dtype::float64);
    });
  }
  const std::size_t d = static_cast<std::size_t>(r.n_features);
  nb::dict out;
  out["location"] = to_numpy(std::move(r.location));
  out["covariance"] = to_numpy(std::move(r.covariance), {d, d});
  if (store_precision) out["precision"] = to_numpy(std::move(r.precision), {d, d});
  return out;
}

// location_ (d,) and precision_ (d, d) of a fitted covariance, and X of d columns unless it is an
// empty (0, 0) block.
template <class Matrix>
void check_covariance_model(const std::string& who, const host_vector<double>& location,
                            const host_matrix<double>& precision, const Matrix& X) {
  const std::int64_t d = static_cast<std::int64_t>(location.shape(0));
  check_model_shape(who, "precision_", precision, {d, d}, "location_ has " + std::to_string(d) + " entries");
  if ((X.shape(0) > 0 || X.shape(1) > 0) && static_cast<std::int64_t>(X.shape(1)) != d)
    throw sl::invalid_argument(who + ": X has " + std::to_string(X.shape(1)) + " features, but location_ has " +
                               std::to_string(d) + " entries");
}

template <class T>
f64_array cov_mahalanobis(host_vector<double> location, host_matrix<double> precision,
                          host_matrix<T> X) {
  check_covariance_model("EmpiricalCovariance.mahalanobis", location, precision, X);
  std::vector<double> out;
  {
    nb::gil_scoped_release nogil;
    out = sl::covariance::mahalanobis<T>({location.data(), location.size()},
                                         {precision.data(), precision.size()}, view(X));
  }
  return to_numpy(std::move(out));
}

template <class T>
double cov_score(std::uintptr_t comm, host_vector<double> location, host_matrix<double> precision,
                 host_matrix<T> X) {
  const auto bad = captured([&] { check_covariance_model("EmpiricalCovariance.score", location, precision, X); });
  nb::gil_scoped_release nogil;
  auto c = comm_from(comm);
  sl::agree(*c, bad);  // the same collective sequence as the device variant
  return sl::covariance::score<T>(*c, {location.data(), location.size()},
                                  {precision.data(), precision.size()}, view(X));
}

template <class T>
double cov_score_cuda(std::uintptr_t comm, host_vector<double> location,
                      host_matrix<double> precision, cuda_matrix<T> X) {
  const auto bad = captured([&] { check_covariance_model("EmpiricalCovariance.score", location, precision, X); });
  nb::gil_scoped_release nogil;
  auto c = comm_from(comm);
  const auto xv = agreed_device_view<T>(*c, X, "EmpiricalCovariance.score", bad);
  return sl::covariance::score<T>(*c, {location.data(), location.size()},
                                  {precision.data(), precision.size()}, xv);
}

// Local; `out` (n doubles) was allocated on X's GPU by X's library (cupy or torch).
template <class T>
void cov_mahalanobis_cuda(host_vector<double> location, host_matrix<double> precision,
                          cuda_matrix<T> X, nb::ndarray<double, nb::ndim<1>, nb::c_contig, nb::device::cuda> out) {
  check_covariance_model("EmpiricalCovariance.mahalanobis", location, precision, X);
  const sl::matrix_view<const T> xv = device_view<T>(X, "EmpiricalCovariance.mahalanobis");
  if (static_cast<std::int64_t>(out.shape(0)) != xv.rows)
    throw sl::invalid_argument("mahalanobis: output length does not match X");
  nb::gil_scoped_release nogil;
  sl::covariance::mahalanobis<T>({location.data(), location.size()},
                                 {precision.data(), precision.size()}, xv,
                                 {out.data(), static_cast<std::int64_t>(out.shape(0)), sl::device_kind::cuda});
}

// --- linear models ------------------------------------------------------------------------------
sl::linear_model::normal_state lr_state_from(nb::handle d, const std::string& who) {
  sl::linear_model::normal_state s;
  if (d.is_none()) return s;
  const state_reader x(d, who, "_partial_state");
  s.n_features = x.count("n_features", max_extent);
  s.n_targets = x.count("n_targets", max_extent);
  s.n_rows = x.count("n_rows");
  s.weight = x.weight("weight");
  // mean and cross are over [X | Y]: p = n_features + n_targets.
  const std::int64_t p = s.n_features + s.n_targets;
  const std::string why = "the state has n_features=" + std::to_string(s.n_features) +
                          " and n_targets=" + std::to_string(s.n_targets);
  s.mean = x.array("mean", {p}, why);
  s.cross = x.array("cross", {p, p}, why);
  // The columns' scale exponents (normal_state::exponent): absent in states saved before they
  // existed (all 0), else one small integer per column.
  if (PyDict_GetItemString(d.ptr(), "exponent"))
    for (double e : x.array("exponent", {p}, why)) {
      if (!(std::abs(e) <= 4096.0) || e != std::trunc(e)) {
        char v[32];
        std::snprintf(v, sizeof v, "%.6g", e);
        corrupt_state(who, std::string("_partial_state['exponent'] holds ") + v +
                               ", expected small integers (the powers of two of the columns' scale)");
      }
      s.exponent.push_back(static_cast<int>(e));
    }
  return s;
}
nb::dict lr_state_to(sl::linear_model::normal_state&& s) {
  nb::dict d;
  const std::size_t p = s.mean.size();
  d["n_features"] = s.n_features;
  d["n_targets"] = s.n_targets;
  d["n_rows"] = s.n_rows;
  d["weight"] = s.weight;
  d["mean"] = to_numpy(std::move(s.mean));
  d["cross"] = to_numpy(std::move(s.cross), {p, p});
  d["exponent"] = to_numpy(std::vector<double>(s.exponent.begin(), s.exponent.end()));
  return d;
}

template <class T>
nb::dict lr_partial_fit(std::uintptr_t comm, nb::object state, host_matrix<T> X,
                        host_matrix<T> Y, std::optional<host_vector<T>> w, const std::string& caller,
                        bool to_device) {
  sl::linear_model::normal_state s;
  const auto bad = captured([&] { s = lr_state_from(state, caller); });
  {
    nb::gil_scoped_release nogil;
    auto c = comm_from(comm);
    if (!to_device) {
      sl::agree(*c, bad);  // the same collective sequence as the device variants
      sl::linear_model::partial_fit<T>(*c, s, view(X), view(Y), view(w), caller.c_str());
    } else {
      // device="cuda" with host data: X (and w) through host_on_device, y copied alongside.
      host_on_device<T> h(X, w);
      std::unique_ptr<sl::device_copy> dy;
      if (!h.err) {
        try {
          dy = std::make_unique<sl::device_copy>(Y.data(), Y.size() * sizeof(T));
        } catch (...) {
          h.err = std::current_exception();
        }
      }
      sl::agree(*c, bad ? bad : h.err);
      sl::matrix_view<const T> yv(static_cast<const T*>(dy->data()), static_cast<std::int64_t>(Y.shape(0)),
                                  static_cast<std::int64_t>(Y.shape(1)), -1, sl::device_kind::cuda);
      std::optional<sl::vector_view<const T>> wv;
      if (w)
        wv = sl::vector_view<const T>{static_cast<const T*>(h.w->data()),
                                      static_cast<std::int64_t>(w->shape(0)), sl::device_kind::cuda};
      sl::linear_model::partial_fit<T>(*c, s, h.view(X), yv, wv, caller.c_str());
    }
  }
  return lr_state_to(std::move(s));
}

template <class T>
nb::dict lr_partial_fit_cuda(std::uintptr_t comm, nb::object state, cuda_matrix<T> X,
                             cuda_matrix<T> Y, std::optional<cuda_vector<T>> w,
                             const std::string& caller, bool) {
  sl::linear_model::normal_state s;
  const auto bad = captured([&] { s = lr_state_from(state, caller); });
  {
    nb::gil_scoped_release nogil;
    auto c = comm_from(comm);
    std::exception_ptr err = bad;
    sl::matrix_view<const T> xv, yv;
    std::optional<sl::vector_view<const T>> wv;
    if (!err) err = captured([&] {
      xv = device_view<T>(X, caller);
      yv = device_view<T>(Y, caller + " (y)");
      if (w) {
        if (w->shape(0) > 1 && w->stride(0) != 1)
          throw sl::invalid_argument(caller + ": sample_weight on the device is not contiguous");
        wv = sl::vector_view<const T>{w->data(), static_cast<std::int64_t>(w->shape(0)), sl::device_kind::cuda};
      }
    });
    sl::agree(*c, err);
    sl::linear_model::partial_fit<T>(*c, s, xv, yv, wv, caller.c_str());
  }
  return lr_state_to(std::move(s));
}

nb::dict lr_solve(nb::handle state, host_vector<double> alpha, bool fit_intercept, double rcond,
                  bool on_gpu, bool spectrum, const std::string& caller, std::uintptr_t comm, bool collective) {
  auto s = lr_state_from(state, caller);
  sl::linear_model::solution r;
  {
    nb::gil_scoped_release nogil;
    replicated(comm, collective, [&] {
      r = sl::linear_model::solve(s, {alpha.data(), alpha.size()}, fit_intercept, rcond, on_gpu, spectrum);
    });
  }
  const std::size_t t = static_cast<std::size_t>(s.n_targets), d = static_cast<std::size_t>(s.n_features);
  nb::dict out;
  out["coef"] = to_numpy(std::move(r.coef), {t, d});
  out["intercept"] = to_numpy(std::move(r.intercept));
  out["singular"] = to_numpy(std::move(r.singular));
  out["rank"] = r.rank;
  return out;
}

template <class T>
f64_array r2_score(std::uintptr_t comm, host_matrix<T> Y, host_matrix<T> P, std::optional<host_vector<T>> w) {
  std::vector<double> r;
  {
    nb::gil_scoped_release nogil;
    auto c = comm_from(comm);
    r = sl::linear_model::r2_score<T>(*c, view(Y), view(P), view(w));
  }
  return to_numpy(std::move(r));
}

sl::linear_model::logistic_params logreg_params(double C, bool penalty, bool fit_intercept, double tol,
                                                int max_iter, const std::string& solver, int verbose) {
  sl::linear_model::logistic_params p;
  p.C = C;
  p.penalty = penalty;
  p.fit_intercept = fit_intercept;
  p.tol = tol;
  p.max_iter = max_iter;
  p.solver = solver == "newton-cg" ? sl::linear_model::logistic_solver::newton_cg
                                   : sl::linear_model::logistic_solver::lbfgs;
  p.verbose = verbose;
  return p;
}

// The warm start, [coef_ | intercept_] row by row, must fit X: kp x (d + fit_intercept) values. An
// empty (0, 0) block has no d of its own; its ranks take the agreed one, as the Python layer does.
template <class Matrix>
std::span<const double> logreg_start(const std::optional<host_vector<double>>& init, const Matrix& X,
                                     std::int64_t n_classes, bool fit_intercept) {
  if (!init) return {};
  const std::int64_t kp = n_classes == 2 ? 1 : n_classes, d = static_cast<std::int64_t>(X.shape(1));
  const std::int64_t want = kp * (d + (fit_intercept ? 1 : 0));
  if ((X.shape(0) > 0 || d > 0) && static_cast<std::int64_t>(init->shape(0)) != want)
    corrupt_state("LogisticRegression", "the warm start (coef_ and intercept_) holds " +
                                            std::to_string(init->shape(0)) + " values but the model has " +
                                            std::to_string(kp) + " coefficient row(s) of " + std::to_string(d) +
                                            " features" + (fit_intercept ? " and an intercept" : "") +
                                            " (expected " + std::to_string(want) + ")");
  return {init->data(), init->size()};
}

nb::dict logreg_result(sl::linear_model::logistic_result&& r) {
  const std::size_t kp = r.intercept.size(), d = kp ? r.coef.size() / kp : 0;
  nb::dict out;
  out["coef"] = to_numpy(std::move(r.coef), {kp, d});
  out["intercept"] = to_numpy(std::move(r.intercept));
  out["n_iter"] = r.n_iter;
  out["converged"] = r.converged;
  out["message"] = r.message;
  return out;
}

template <class T>
nb::dict logreg_fit(std::uintptr_t comm, host_matrix<T> X, host_vector<std::int32_t> y,
                    std::int64_t n_classes, std::optional<host_vector<T>> w, double C, bool penalty,
                    bool fit_intercept, double tol, int max_iter, const std::string& solver,
                    int verbose, std::optional<host_vector<double>> init, bool to_device) {
  const auto p = logreg_params(C, penalty, fit_intercept, tol, max_iter, solver, verbose);
  sl::linear_model::logistic_result r;
  {
    nb::gil_scoped_release nogil;
    auto c = comm_from(comm);
    std::span<const double> start;
    const auto bad = captured([&] { start = logreg_start(init, X, n_classes, fit_intercept); });
    const std::int64_t n = static_cast<std::int64_t>(y.shape(0));
    if (!to_device) {
      sl::agree(*c, bad);  // the same collective sequence as the device variants
      r = sl::linear_model::fit_logistic<T>(*c, view(X), sl::vector_view<const std::int32_t>{y.data(), n},
                                            n_classes, view(w), p, start);
    } else {
      // device="cuda" with host data: X, w (host_on_device) and the class indices to the GPU.
      host_on_device<T> h(X, w);
      std::unique_ptr<sl::device_copy> dy;
      if (!h.err) {
        try {
          dy = std::make_unique<sl::device_copy>(y.data(), y.size() * sizeof(std::int32_t));
        } catch (...) {
          h.err = std::current_exception();
        }
      }
      sl::agree(*c, bad ? bad : h.err);
      std::optional<sl::vector_view<const T>> wv;
      if (w) wv = sl::vector_view<const T>{static_cast<const T*>(h.w->data()), n, sl::device_kind::cuda};
      r = sl::linear_model::fit_logistic<T>(
          *c, h.view(X),
          sl::vector_view<const std::int32_t>{static_cast<const std::int32_t*>(dy->data()), n, sl::device_kind::cuda},
          n_classes, wv, p, start);
    }
  }
  return logreg_result(std::move(r));
}

template <class T>
nb::dict logreg_fit_cuda(std::uintptr_t comm, cuda_matrix<T> X, nb::ndarray<const std::int32_t, nb::ndim<1>, nb::device::cuda> y,
                         std::int64_t n_classes, std::optional<cuda_vector<T>> w, double C, bool penalty,
                         bool fit_intercept, double tol, int max_iter, const std::string& solver,
                         int verbose, std::optional<host_vector<double>> init, bool) {
  const auto p = logreg_params(C, penalty, fit_intercept, tol, max_iter, solver, verbose);
  sl::linear_model::logistic_result r;
  {
    nb::gil_scoped_release nogil;
    auto c = comm_from(comm);
    std::span<const double> start;
    std::exception_ptr err = captured([&] { start = logreg_start(init, X, n_classes, fit_intercept); });
    sl::matrix_view<const T> xv;
    sl::vector_view<const std::int32_t> yv;
    std::optional<sl::vector_view<const T>> wv;
    if (!err) err = captured([&] {
      xv = device_view<T>(X, "LogisticRegression");
      if (y.shape(0) > 1 && y.stride(0) != 1)
        throw sl::invalid_argument("LogisticRegression: y on the device is not contiguous");
      yv = {y.data(), static_cast<std::int64_t>(y.shape(0)), sl::device_kind::cuda};
      if (w) {
        if (w->shape(0) > 1 && w->stride(0) != 1)
          throw sl::invalid_argument("LogisticRegression: sample_weight on the device is not contiguous");
        wv = sl::vector_view<const T>{w->data(), static_cast<std::int64_t>(w->shape(0)), sl::device_kind::cuda};
      }
    });
    sl::agree(*c, err);
    r = sl::linear_model::fit_logistic<T>(*c, xv, yv, n_classes, wv, p, start);
  }
  return logreg_result(std::move(r));
}

// --- PCA ------------------------------------------------------------------------------------------
nb::dict pca_to_dict(sl::decomposition::pca_spectrum&& r) {
  const std::size_t k = r.singular.size(), d = static_cast<std::size_t>(r.n_features);
  nb::dict out;
  out["n_samples"] = r.n_samples;
  out["mean"] = to_numpy(std::move(r.mean));
  out["singular"] = to_numpy(std::move(r.singular));
  out["explained_variance"] = to_numpy(std::move(r.explained_variance));
  out["components"] = to_numpy(std::move(r.components), {k, d});
  return out;
}

template <class T, class Matrix, class Where>
nb::dict pca_full(std::uintptr_t comm, const Matrix& X, Where where) {
  sl::decomposition::pca_spectrum r;
  run_on_matrix<T>(comm, X, where, [&](const sl::comm& c, sl::matrix_view<const T> xv) {
    r = sl::decomposition::pca_full<T>(c, xv);
  });
  return pca_to_dict(std::move(r));
}

template <class T, class Matrix, class Where>
nb::dict pca_randomized(std::uintptr_t comm, const Matrix& X, Where where, std::int64_t k,
                        std::int64_t oversamples, int n_iter, std::uint64_t seed) {
  sl::decomposition::randomized_spectrum r;
  run_on_matrix<T>(comm, X, where, [&](const sl::comm& c, sl::matrix_view<const T> xv) {
    r = sl::decomposition::pca_randomized<T>(c, xv, k, oversamples, n_iter, seed);
  });
  const double total = r.total_variance;
  nb::dict out = pca_to_dict(std::move(r));
  out["total_variance"] = total;
  return out;
}

template <class T>
nb::dict pca_full_host(std::uintptr_t comm, host_matrix<T> X, bool to_device) {
  return pca_full<T>(comm, X, to_device);
}
template <class T>
nb::dict pca_full_cuda(std::uintptr_t comm, cuda_matrix<T> X, bool) {
  return pca_full<T>(comm, X, "PCA");
}
template <class T>
nb::dict pca_randomized_host(std::uintptr_t comm, host_matrix<T> X, std::int64_t k, std::int64_t oversamples,
                             int n_iter, std::uint64_t seed, bool to_device) {
  return pca_randomized<T>(comm, X, to_device, k, oversamples, n_iter, seed);
}
template <class T>
nb::dict pca_randomized_cuda(std::uintptr_t comm, cuda_matrix<T> X, std::int64_t k, std::int64_t oversamples,
                             int n_iter, std::uint64_t seed, bool) {
  return pca_randomized<T>(comm, X, "PCA", k, oversamples, n_iter, seed);
}

// --- k-means --------------------------------------------------------------------------------------
nb::ndarray<nb::numpy, std::int32_t> to_numpy_int32(std::vector<std::int32_t>&& v) {
  auto* owner = new std::vector<std::int32_t>(std::move(v));
  nb::capsule del(owner, [](void* p) noexcept { delete static_cast<std::vector<std::int32_t>*>(p); });
  const std::size_t shape[1] = {owner->size()};
  return nb::ndarray<nb::numpy, std::int32_t>(owner->data(), 1, shape, del);
}

// cluster_centers_: at least one centre, of X's width unless X is an empty (0, 0) block.
template <class Matrix>
std::span<const double> centers_span(const std::string& who, const host_matrix<double>& C, const Matrix& X) {
  const std::int64_t k = static_cast<std::int64_t>(C.shape(0)), d = static_cast<std::int64_t>(C.shape(1));
  const bool declared = X.shape(0) > 0 || X.shape(1) > 0;
  if (k == 0 || (declared && d != static_cast<std::int64_t>(X.shape(1))))
    corrupt_state(who, "cluster_centers_ has shape " + shape_text({k, d}) + " but X has " +
                           std::to_string(X.shape(1)) + " features (expected at least one centre of as many)");
  return {C.data(), C.size()};
}

// init: 0 k-means++, 1 random, 2 k-means||, 3 given (init_centers: n_init x k x d).
struct kmeans_args {
  std::int64_t k;
  int init, n_init, max_iter;
  double tol;
  int verbose;
  std::uint64_t seed;
  std::optional<host_vector<double>> init_centers;
};

template <class T>
nb::dict kmeans_result(sl::cluster::kmeans_model&& m, std::int64_t k) {
  nb::dict out;
  const std::size_t d = static_cast<std::size_t>(m.n_features);
  out["centers"] = to_numpy(std::move(m.centers), {static_cast<std::size_t>(k), d});
  out["labels"] = to_numpy_int32(std::move(m.labels));
  out["inertia"] = m.inertia;
  out["n_iter"] = m.n_iter;
  out["n_distinct"] = m.n_distinct;
  out["n_features"] = m.n_features;
  return out;
}

// The fit itself on views (host, host copied to the GPU, or device), GIL released, after one
// agreement on the preparation (the same collective sequence for every variant).
template <class T>
sl::cluster::kmeans_model kmeans_fit_views(const sl::comm& c, std::exception_ptr prep, sl::matrix_view<const T> xv,
                                           std::optional<sl::vector_view<const T>> wv, const kmeans_args& a) {
  sl::agree(c, prep);
  sl::cluster::kmeans_params p;
  p.n_clusters = a.k;
  p.init = static_cast<sl::cluster::kmeans_init>(a.init);
  p.n_init = a.n_init;
  p.max_iter = a.max_iter;
  p.tol = a.tol;
  p.verbose = a.verbose;
  p.seed = a.seed;
  std::span<const double> given;
  if (a.init_centers) given = {a.init_centers->data(), a.init_centers->size()};
  return sl::cluster::kmeans_fit<T>(c, xv, wv, p, given);
}

template <class T>
nb::dict kmeans_fit(std::uintptr_t comm, host_matrix<T> X, std::optional<host_vector<T>> w, std::int64_t k,
                    int init, int n_init, int max_iter, double tol, int verbose, std::uint64_t seed,
                    std::optional<host_vector<double>> init_centers, bool to_device) {
  const kmeans_args a{k, init, n_init, max_iter, tol, verbose, seed, std::move(init_centers)};
  sl::cluster::kmeans_model m;
  {
    nb::gil_scoped_release nogil;
    auto c = comm_from(comm);
    if (!to_device) {
      m = kmeans_fit_views<T>(*c, nullptr, view(X), view(w), a);
    } else {
      host_on_device<T> h(X, w);
      std::optional<sl::vector_view<const T>> wv;
      if (h.w) wv = sl::vector_view<const T>{static_cast<const T*>(h.w->data()), static_cast<std::int64_t>(w->shape(0)),
                                             sl::device_kind::cuda};
      m = kmeans_fit_views<T>(*c, h.err, h.err ? sl::matrix_view<const T>{} : h.view(X), wv, a);
    }
  }
  return kmeans_result<T>(std::move(m), k);
}

template <class T>
nb::dict kmeans_fit_cuda(std::uintptr_t comm, cuda_matrix<T> X, std::optional<cuda_vector<T>> w, std::int64_t k,
                         int init, int n_init, int max_iter, double tol, int verbose, std::uint64_t seed,
                         std::optional<host_vector<double>> init_centers, bool) {
  const kmeans_args a{k, init, n_init, max_iter, tol, verbose, seed, std::move(init_centers)};
  sl::cluster::kmeans_model m;
  {
    nb::gil_scoped_release nogil;
    auto c = comm_from(comm);
    std::exception_ptr err;
    sl::matrix_view<const T> xv;
    std::optional<sl::vector_view<const T>> wv;
    try {
      xv = device_view<T>(X, "KMeans");
      if (w) {
        if (w->shape(0) > 1 && w->stride(0) != 1)
          throw sl::invalid_argument("KMeans: sample_weight on the device is not contiguous");
        wv = sl::vector_view<const T>{w->data(), static_cast<std::int64_t>(w->shape(0)), sl::device_kind::cuda};
      }
    } catch (...) {
      err = std::current_exception();
    }
    m = kmeans_fit_views<T>(*c, err, xv, wv, a);
  }
  return kmeans_result<T>(std::move(m), k);
}

template <class T>
nb::ndarray<nb::numpy, std::int32_t> kmeans_predict_cuda(cuda_matrix<T> X, host_matrix<double> centers) {
  const auto cs = centers_span("KMeans.predict", centers, X);
  std::vector<std::int32_t> labels;
  {
    nb::gil_scoped_release nogil;
    labels = sl::cluster::kmeans_predict<T>(device_view<T>(X, "KMeans.predict"), cs);
  }
  return to_numpy_int32(std::move(labels));
}

template <class T>
double kmeans_inertia_cuda(std::uintptr_t comm, cuda_matrix<T> X, std::optional<cuda_vector<T>> w,
                           host_matrix<double> centers) {
  std::span<const double> cs;
  const auto bad = captured([&] { cs = centers_span("KMeans.score", centers, X); });
  nb::gil_scoped_release nogil;
  auto c = comm_from(comm);
  const auto xv = agreed_device_view<T>(*c, X, "KMeans.score", bad);
  std::optional<sl::vector_view<const T>> wv;
  if (w) wv = sl::vector_view<const T>{w->data(), static_cast<std::int64_t>(w->shape(0)), sl::device_kind::cuda};
  return sl::cluster::kmeans_inertia<T>(*c, xv, wv, cs);
}

template <class T>
nb::ndarray<nb::numpy, std::int32_t> kmeans_predict(host_matrix<T> X, host_matrix<double> centers) {
  const auto cs = centers_span("KMeans.predict", centers, X);
  std::vector<std::int32_t> labels;
  {
    nb::gil_scoped_release nogil;
    labels = sl::cluster::kmeans_predict<T>(view(X), cs);
  }
  return to_numpy_int32(std::move(labels));
}

template <class T>
f64_array kmeans_transform(host_matrix<T> X, host_matrix<double> centers) {
  const auto cs = centers_span("KMeans.transform", centers, X);
  std::vector<double> dist;
  {
    nb::gil_scoped_release nogil;
    dist = sl::cluster::kmeans_transform<T>(view(X), cs);
  }
  return to_numpy(std::move(dist), {static_cast<std::size_t>(X.shape(0)), static_cast<std::size_t>(centers.shape(0))});
}

template <class T>
double kmeans_inertia(std::uintptr_t comm, host_matrix<T> X, std::optional<host_vector<T>> w,
                      host_matrix<double> centers) {
  std::span<const double> cs;
  const auto bad = captured([&] { cs = centers_span("KMeans.score", centers, X); });
  nb::gil_scoped_release nogil;
  auto c = comm_from(comm);
  sl::agree(*c, bad);  // the device variant's agreement on its views: the same collectives
  return sl::cluster::kmeans_inertia<T>(*c, view(X), view(w), cs);
}

// In-place sum/min/max of a float64 or int64 numpy array over the ranks (the Python layer's global
// metrics and counts); identical on every rank.
template <class T>
void allreduce_array(std::uintptr_t comm, nb::ndarray<T, nb::c_contig, nb::device::cpu> a, const std::string& op) {
  const sl::reduce_op o = op == "sum" ? sl::reduce_op::sum : op == "min" ? sl::reduce_op::min : sl::reduce_op::max;
  nb::gil_scoped_release nogil;
  auto c = comm_from(comm);
  c->allreduce(a.data(), a.size(), sl::comm_type_of<T>(), o);
}

// The collective guard for work done in Python (conversion, validation): every rank calls it
// at the start and at the end of every public collective method; kind 0 means this rank
// succeeded. `call` names the method ("Ridge.fit"); `params` and `state` are (name, digest) pairs
// of the estimator's parameters and of the state the call reads, digests of their exact bytes
// (see python/spmdlearn/_comm.py), which must match on every rank. Returns (0, "") when all is
// well, else the agreed (kind, message) -- the same on every rank -- for Python to raise with the
// right exception class.
using named_digests = std::vector<std::pair<std::string, std::int64_t>>;
nb::tuple agree(std::uintptr_t comm, int kind, const std::string& message, const std::string& call,
                named_digests params, named_digests state) {
  int out_kind = 0;
  std::string out_message;
  {
    nb::gil_scoped_release nogil;
    std::exception_ptr e;
    if (kind != 0) e = std::make_exception_ptr(sl::error(static_cast<sl::error_kind>(kind), message));
    try {
      auto c = comm_from(comm);
      const sl::call_identity id{call, std::move(params), std::move(state)};
      sl::agree(*c, e, {}, &id);
    } catch (const sl::error& x) {
      out_kind = static_cast<int>(x.kind());
      out_message = x.what();
    }
  }
  return nb::make_tuple(out_kind, out_message);
}

// The scalers' transform on device arrays: `out` was allocated by the caller's library (cupy or
// torch, empty_like X), so the result is an array of the input's kind on the input's GPU.
template <class T>
void scale_columns_cuda(cuda_matrix<T> X, nb::ndarray<T, nb::ndim<2>, nb::c_contig, nb::device::cuda> out,
                        host_vector<double> a, host_vector<double> b) {
  // a and b come from the fitted attributes (mean_, scale_, max_abs_), one entry per column.
  if (a.shape(0) != X.shape(1) || b.shape(0) != X.shape(1))
    corrupt_state("transform", "the per-column factors from scale_/mean_ have " + std::to_string(a.shape(0)) +
                                   " and " + std::to_string(b.shape(0)) + " entries but X has " +
                                   std::to_string(X.shape(1)) + " features");
  if (out.shape(0) != X.shape(0) || out.shape(1) != X.shape(1))
    throw sl::invalid_argument("transform: the output array does not have X's shape");
  nb::gil_scoped_release nogil;
  const sl::matrix_view<const T> xv = device_view<T>(X, "transform");
  sl::matrix_view<T> ov(out.data(), out.shape(0), out.shape(1), -1, sl::device_kind::cuda);
  sl::preprocessing::scale_columns<T>(xv, ov, {a.data(), a.size()}, {b.data(), b.size()});
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "spmdlearn C++ core (nanobind bridge)";

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const sl::error& e) {
      switch (e.kind()) {
        case sl::error_kind::invalid_argument: PyErr_SetString(PyExc_ValueError, e.what()); break;
        case sl::error_kind::out_of_memory: PyErr_SetString(PyExc_MemoryError, e.what()); break;
        case sl::error_kind::not_implemented: PyErr_SetString(PyExc_NotImplementedError, e.what()); break;
        case sl::error_kind::type_error: PyErr_SetString(PyExc_TypeError, e.what()); break;
        case sl::error_kind::invalid_parameter: PyErr_SetString(PyExc_ValueError, e.what()); break;
        default: PyErr_SetString(PyExc_RuntimeError, e.what()); break;
      }
    }
  });

  m.def("built_with_cuda", &sl::built_with_cuda);
  m.def("cuda_device_count", &sl::cuda_device_count);
  m.def("agree", &agree, "comm"_a, "kind"_a, "message"_a, "call"_a = "", "params"_a = named_digests{},
        "state"_a = named_digests{});
  m.def("set_timeout", &sl::set_collective_timeout, "seconds"_a);
  m.def("get_timeout", [] { return sl::collective_timeout(); });

  // The checked restore of a state dict on its own (the Python layer's check of a model it has
  // just unpickled): raises ValueError naming `who` and the entry, else returns None.
  m.def(
      "check_state",
      [](const std::string& kind, nb::handle state, const std::string& who) {
        // None means "no state yet" to the readers; a fitted model's state is never None.
        if (state.is_none()) corrupt_state(who, "_partial_state is None, expected a dict");
        if (kind == "basic_statistics") bs_state_from(state, who);
        else if (kind == "covariance") cov_state_from(state, who);
        else if (kind == "normal_equations") lr_state_from(state, who);
        else throw sl::invalid_argument("check_state: unknown kind '" + kind + "'");
      },
      "kind"_a, "state"_a.none(), "who"_a);
  m.def("bs_parse_option", [](const std::string& n) { return sl::basic_statistics::parse_option(n); });
  m.def("bs_option_names", [] {
    nb::list l;
    for (auto n : sl::basic_statistics::option_names()) l.append(nb::str(n.data(), n.size()));
    return l;
  });
  m.def("bs_partial_fit", &bs_partial_fit<double>, "comm"_a, "state"_a.none(), "X"_a, "w"_a.none(),
        "caller"_a = "BasicStatistics", "to_device"_a = false);
  m.def("bs_partial_fit", &bs_partial_fit<float>, "comm"_a, "state"_a.none(), "X"_a, "w"_a.none(),
        "caller"_a = "BasicStatistics", "to_device"_a = false);
  m.def("bs_partial_fit", &bs_partial_fit_cuda<double>, "comm"_a, "state"_a.none(), "X"_a,
        "w"_a.none(), "caller"_a = "BasicStatistics", "to_device"_a = false);
  m.def("bs_partial_fit", &bs_partial_fit_cuda<float>, "comm"_a, "state"_a.none(), "X"_a,
        "w"_a.none(), "caller"_a = "BasicStatistics", "to_device"_a = false);
  m.def("select_local_gpu", &sl::select_local_gpu);
  m.def("scale_columns", &scale_columns_cuda<double>);
  m.def("scale_columns", &scale_columns_cuda<float>);
  m.def("bs_finalize", &bs_finalize, "state"_a, "options"_a);

  m.def("cov_partial_fit", &cov_partial_fit<double>, "comm"_a, "state"_a.none(), "X"_a,
        "to_device"_a = false, "caller"_a = "EmpiricalCovariance");
  m.def("cov_partial_fit", &cov_partial_fit<float>, "comm"_a, "state"_a.none(), "X"_a,
        "to_device"_a = false, "caller"_a = "EmpiricalCovariance");
  m.def("cov_partial_fit", &cov_partial_fit_cuda<double>, "comm"_a, "state"_a.none(), "X"_a,
        "to_device"_a = false, "caller"_a = "EmpiricalCovariance");
  m.def("cov_partial_fit", &cov_partial_fit_cuda<float>, "comm"_a, "state"_a.none(), "X"_a,
        "to_device"_a = false, "caller"_a = "EmpiricalCovariance");
  m.def("cov_finalize", &cov_finalize, "state"_a, "assume_centered"_a, "store_precision"_a, "float32"_a,
        "comm"_a = 0);
  m.def("cov_mahalanobis", &cov_mahalanobis<double>);
  m.def("cov_mahalanobis", &cov_mahalanobis<float>);
  m.def("cov_score", &cov_score<double>);
  m.def("cov_score", &cov_score<float>);
  m.def("cov_score", &cov_score_cuda<double>);
  m.def("cov_score", &cov_score_cuda<float>);
  m.def("cov_mahalanobis", &cov_mahalanobis_cuda<double>);
  m.def("cov_mahalanobis", &cov_mahalanobis_cuda<float>);
  m.def("lr_partial_fit", &lr_partial_fit<double>, "comm"_a, "state"_a.none(), "X"_a, "Y"_a,
        "w"_a.none(), "caller"_a, "to_device"_a = false);
  m.def("lr_partial_fit", &lr_partial_fit<float>, "comm"_a, "state"_a.none(), "X"_a, "Y"_a,
        "w"_a.none(), "caller"_a, "to_device"_a = false);
  m.def("lr_partial_fit", &lr_partial_fit_cuda<double>, "comm"_a, "state"_a.none(), "X"_a, "Y"_a,
        "w"_a.none(), "caller"_a, "to_device"_a = false);
  m.def("lr_partial_fit", &lr_partial_fit_cuda<float>, "comm"_a, "state"_a.none(), "X"_a, "Y"_a,
        "w"_a.none(), "caller"_a, "to_device"_a = false);
  m.def("lr_solve", &lr_solve, "state"_a, "alpha"_a, "fit_intercept"_a, "rcond"_a, "on_gpu"_a = false,
        "spectrum"_a = true, "caller"_a = "LinearRegression", "comm"_a = 0, "collective"_a = true);
  m.def("r2_score", &r2_score<double>, "comm"_a, "Y"_a, "P"_a, "w"_a.none());
  m.def("r2_score", &r2_score<float>, "comm"_a, "Y"_a, "P"_a, "w"_a.none());
  m.def("logreg_fit", &logreg_fit<double>, "comm"_a, "X"_a, "y"_a, "n_classes"_a, "w"_a.none(), "C"_a,
        "penalty"_a, "fit_intercept"_a, "tol"_a, "max_iter"_a, "solver"_a, "verbose"_a,
        "init"_a.none(), "to_device"_a = false);
  m.def("logreg_fit", &logreg_fit<float>, "comm"_a, "X"_a, "y"_a, "n_classes"_a, "w"_a.none(), "C"_a,
        "penalty"_a, "fit_intercept"_a, "tol"_a, "max_iter"_a, "solver"_a, "verbose"_a,
        "init"_a.none(), "to_device"_a = false);
  m.def("logreg_fit", &logreg_fit_cuda<double>, "comm"_a, "X"_a, "y"_a, "n_classes"_a, "w"_a.none(), "C"_a,
        "penalty"_a, "fit_intercept"_a, "tol"_a, "max_iter"_a, "solver"_a, "verbose"_a,
        "init"_a.none(), "to_device"_a = false);
  m.def("logreg_fit", &logreg_fit_cuda<float>, "comm"_a, "X"_a, "y"_a, "n_classes"_a, "w"_a.none(), "C"_a,
        "penalty"_a, "fit_intercept"_a, "tol"_a, "max_iter"_a, "solver"_a, "verbose"_a,
        "init"_a.none(), "to_device"_a = false);
  m.def("pca_infer_dimension", [](host_vector<double> spectrum, std::int64_t n_samples) {
    return sl::decomposition::infer_dimension(
        std::vector<double>(spectrum.data(), spectrum.data() + spectrum.size()), n_samples);
  });
  m.def("pca_full", &pca_full_host<double>, "comm"_a, "X"_a, "to_device"_a = false);
  m.def("pca_full", &pca_full_host<float>, "comm"_a, "X"_a, "to_device"_a = false);
  m.def("pca_full", &pca_full_cuda<double>, "comm"_a, "X"_a, "to_device"_a = false);
  m.def("pca_full", &pca_full_cuda<float>, "comm"_a, "X"_a, "to_device"_a = false);
  m.def("pca_randomized", &pca_randomized_host<double>, "comm"_a, "X"_a, "k"_a, "oversamples"_a, "n_iter"_a,
        "seed"_a, "to_device"_a = false);
  m.def("pca_randomized", &pca_randomized_host<float>, "comm"_a, "X"_a, "k"_a, "oversamples"_a, "n_iter"_a,
        "seed"_a, "to_device"_a = false);
  m.def("pca_randomized", &pca_randomized_cuda<double>, "comm"_a, "X"_a, "k"_a, "oversamples"_a, "n_iter"_a,
        "seed"_a, "to_device"_a = false);
  m.def("pca_randomized", &pca_randomized_cuda<float>, "comm"_a, "X"_a, "k"_a, "oversamples"_a, "n_iter"_a,
        "seed"_a, "to_device"_a = false);
  m.def(
      "pca_covariance_eigh",
      [](nb::handle state, bool on_gpu, std::uintptr_t comm) {
        auto s = cov_state_from(state, "PCA");
        sl::decomposition::pca_spectrum r;
        {
          nb::gil_scoped_release nogil;
          replicated(comm, true, [&] { r = sl::decomposition::pca_covariance_eigh(s, on_gpu); });
        }
        return pca_to_dict(std::move(r));
      },
      "state"_a, "on_gpu"_a = false, "comm"_a = 0);
  m.def("kmeans_fit", &kmeans_fit<double>, "comm"_a, "X"_a, "w"_a.none(), "k"_a, "init"_a, "n_init"_a,
        "max_iter"_a, "tol"_a, "verbose"_a, "seed"_a, "init_centers"_a.none(), "to_device"_a = false);
  m.def("kmeans_fit", &kmeans_fit<float>, "comm"_a, "X"_a, "w"_a.none(), "k"_a, "init"_a, "n_init"_a,
        "max_iter"_a, "tol"_a, "verbose"_a, "seed"_a, "init_centers"_a.none(), "to_device"_a = false);
  m.def("kmeans_fit", &kmeans_fit_cuda<double>, "comm"_a, "X"_a, "w"_a.none(), "k"_a, "init"_a, "n_init"_a,
        "max_iter"_a, "tol"_a, "verbose"_a, "seed"_a, "init_centers"_a.none(), "to_device"_a = false);
  m.def("kmeans_fit", &kmeans_fit_cuda<float>, "comm"_a, "X"_a, "w"_a.none(), "k"_a, "init"_a, "n_init"_a,
        "max_iter"_a, "tol"_a, "verbose"_a, "seed"_a, "init_centers"_a.none(), "to_device"_a = false);
  m.def("kmeans_predict", &kmeans_predict_cuda<double>, "X"_a, "centers"_a);
  m.def("kmeans_predict", &kmeans_predict_cuda<float>, "X"_a, "centers"_a);
  m.def("kmeans_inertia", &kmeans_inertia_cuda<double>, "comm"_a, "X"_a, "w"_a.none(), "centers"_a);
  m.def("kmeans_inertia", &kmeans_inertia_cuda<float>, "comm"_a, "X"_a, "w"_a.none(), "centers"_a);
  m.def("kmeans_predict", &kmeans_predict<double>, "X"_a, "centers"_a);
  m.def("kmeans_predict", &kmeans_predict<float>, "X"_a, "centers"_a);
  m.def("kmeans_transform", &kmeans_transform<double>, "X"_a, "centers"_a);
  m.def("kmeans_transform", &kmeans_transform<float>, "X"_a, "centers"_a);
  m.def("kmeans_inertia", &kmeans_inertia<double>, "comm"_a, "X"_a, "w"_a.none(), "centers"_a);
  m.def("kmeans_inertia", &kmeans_inertia<float>, "comm"_a, "X"_a, "w"_a.none(), "centers"_a);
  m.def("allreduce", &allreduce_array<double>, "comm"_a, "a"_a, "op"_a = "sum");
  m.def("allreduce", &allreduce_array<std::int64_t>, "comm"_a, "a"_a, "op"_a = "sum");
  m.def("pinvh", [](host_matrix<double> a, bool float32) {
    if (a.shape(0) != a.shape(1)) throw sl::invalid_argument("pinvh: the matrix is not square");
    const std::size_t d = a.shape(0);
    auto out = sl::covariance::pinvh({a.data(), a.size()}, static_cast<std::int64_t>(d),
                                     float32 ? sl::dtype::float32 : sl::dtype::float64);
    return to_numpy(std::move(out), {d, d});
  });

  m.def("standard_scaler_finalize", [](nb::handle state, bool with_mean, bool with_std) {
    auto r = sl::preprocessing::standard_scaler_finalize(bs_state_from(state, "StandardScaler"), {with_mean, with_std});
    nb::dict d;
    if (!r.mean.empty()) d["mean"] = to_numpy(std::move(r.mean));
    if (with_std) {
      d["var"] = to_numpy(std::move(r.var));
      d["scale"] = to_numpy(std::move(r.scale));
    }
    return d;
  });
  m.def("max_abs_scaler_finalize", [](nb::handle state, bool float32) {
    auto r = sl::preprocessing::max_abs_scaler_finalize(
        bs_state_from(state, "MaxAbsScaler"), float32 ? sl::dtype::float32 : sl::dtype::float64);
    nb::dict d;
    d["max_abs"] = to_numpy(std::move(r.max_abs));
    d["scale"] = to_numpy(std::move(r.scale));
    return d;
  });
}
