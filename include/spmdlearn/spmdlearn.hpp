// Everything public in one include.
#pragma once
#include "spmdlearn/core/comm.hpp"
#include "spmdlearn/core/device.hpp"
#include "spmdlearn/core/error.hpp"
#include "spmdlearn/core/guard.hpp"
#include "spmdlearn/core/table.hpp"
#include "spmdlearn/basic_statistics.hpp"
#include "spmdlearn/cluster.hpp"
#include "spmdlearn/covariance.hpp"
#include "spmdlearn/decomposition.hpp"
#include "spmdlearn/linear_model.hpp"
#include "spmdlearn/preprocessing.hpp"
