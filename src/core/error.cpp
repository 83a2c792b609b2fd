#include "spmdlearn/core/error.hpp"

#include <new>

namespace spmdlearn {

void throw_error(error_kind kind, const std::string& message, int rank) {
  switch (kind) {
    case error_kind::invalid_argument: throw invalid_argument(message, rank);
    case error_kind::out_of_memory: throw out_of_memory(message, rank);
    case error_kind::not_implemented: throw not_implemented(message, rank);
    case error_kind::type_error: throw type_error(message, rank);
    case error_kind::invalid_parameter: throw invalid_parameter(message, rank);
    default: throw runtime_error(message, rank);
  }
}

error_kind classify(const std::exception_ptr& e, std::string& message) {
  try {
    std::rethrow_exception(e);
  } catch (const error& x) {
    message = x.what();
    return x.kind() == error_kind::none ? error_kind::runtime : x.kind();
  } catch (const std::bad_alloc& x) {
    message = std::string("out of memory (") + x.what() + ")";
    return error_kind::out_of_memory;
  } catch (const std::invalid_argument& x) {
    message = x.what();
    return error_kind::invalid_argument;
  } catch (const std::exception& x) {
    message = x.what();
    return error_kind::runtime;
  } catch (...) {
    message = "unknown C++ exception";
    return error_kind::runtime;
  }
}

}  // namespace spmdlearn
