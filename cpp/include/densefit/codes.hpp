// The integer codes and table columns of a Plan, the one C++ copy of python/densefit/activations.py,
// losses.py, optimizers.py and plan.py's constants. bindings.cpp exports these tables as
// densefit._core.codes() and tests/test_codes.py compares every entry with the Python side, so the
// two cannot drift apart. decode_net (net.hpp) rejects any code not listed here; the switches over
// them name every case and reach unknown_code after none matched.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace densefit {

enum Activation : int64_t { IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, SOFTPLUS, GELU, SOFTMAX };
enum Loss : int64_t { MSE, BINARY_CROSSENTROPY, CATEGORICAL_CROSSENTROPY };
enum OptimizerKind : int64_t { SGD, ADAM, ADAMW, RMSPROP, ADAGRAD };
enum OptimizerColumn : int64_t {
    MOMENTUM, DAMPENING, NESTEROV, BETA_1, BETA_2, EPSILON, RHO, WEIGHT_DECAY, CLIPNORM, CLIPVALUE, N_OPT_PARAMS
};
enum OpKind : int64_t { DENSE, ACTIVATION, DROPOUT, BATCHNORM };
enum OpColumn : int64_t { KIND, N_IN, N_OUT, PARAM_OFF, STAT_OFF, ACT, LAYER, USE_BIAS, N_OP_COLUMNS };
enum OpParamColumn : int64_t { ALPHA = 0, RATE = 0, BN_MOMENTUM = 0, BN_EPSILON = 1, L1 = 2, L2 = 3, N_OP_PARAMS = 4 };

struct CodeName {
    const char* name;  // the Python constant's name
    int64_t code;
};

struct CodeTable {
    const char* concept;
    const CodeName* entries;
    int count;
};

inline constexpr CodeName kActivationCodes[] = {
    {"IDENTITY", IDENTITY}, {"SIGMOID", SIGMOID}, {"TANH", TANH}, {"RELU", RELU}, {"LEAKY_RELU", LEAKY_RELU},
    {"ELU", ELU}, {"SOFTPLUS", SOFTPLUS}, {"GELU", GELU}, {"SOFTMAX", SOFTMAX}};
inline constexpr CodeName kLossCodes[] = {
    {"MSE", MSE}, {"BINARY_CROSSENTROPY", BINARY_CROSSENTROPY}, {"CATEGORICAL_CROSSENTROPY", CATEGORICAL_CROSSENTROPY}};
inline constexpr CodeName kOptimizerCodes[] = {
    {"SGD", SGD}, {"ADAM", ADAM}, {"ADAMW", ADAMW}, {"RMSPROP", RMSPROP}, {"ADAGRAD", ADAGRAD}};
inline constexpr CodeName kOptParamColumns[] = {
    {"MOMENTUM", MOMENTUM}, {"DAMPENING", DAMPENING}, {"NESTEROV", NESTEROV}, {"BETA_1", BETA_1},
    {"BETA_2", BETA_2}, {"EPSILON", EPSILON}, {"RHO", RHO}, {"WEIGHT_DECAY", WEIGHT_DECAY},
    {"CLIPNORM", CLIPNORM}, {"CLIPVALUE", CLIPVALUE}, {"N_OPT_PARAMS", N_OPT_PARAMS}};
inline constexpr CodeName kOpKinds[] = {
    {"DENSE", DENSE}, {"ACTIVATION", ACTIVATION}, {"DROPOUT", DROPOUT}, {"BATCHNORM", BATCHNORM}};
inline constexpr CodeName kOpColumns[] = {
    {"KIND", KIND}, {"N_IN", N_IN}, {"N_OUT", N_OUT}, {"PARAM_OFF", PARAM_OFF}, {"STAT_OFF", STAT_OFF},
    {"ACT", ACT}, {"LAYER", LAYER}, {"USE_BIAS", USE_BIAS}, {"N_OP_COLUMNS", N_OP_COLUMNS}};
inline constexpr CodeName kOpParamColumns[] = {
    {"ALPHA", ALPHA}, {"RATE", RATE}, {"BN_MOMENTUM", BN_MOMENTUM}, {"BN_EPSILON", BN_EPSILON},
    {"L1", L1}, {"L2", L2}, {"N_OP_PARAMS", N_OP_PARAMS}};

template <int N>
constexpr CodeTable code_table(const char* concept, const CodeName (&entries)[N]) {
    return {concept, entries, N};
}

// Whether `code` is one of the table's: the validity checks read the tables, so a new code needs
// no range check edited anywhere.
template <int N>
constexpr bool listed(const CodeName (&entries)[N], int64_t code) {
    for (const CodeName& entry : entries)
        if (entry.code == code) return true;
    return false;
}

// Every table, by the concept's name.
inline constexpr CodeTable kCodeTables[] = {
    code_table("activation", kActivationCodes),  code_table("loss", kLossCodes),
    code_table("optimizer", kOptimizerCodes),    code_table("opt_params", kOptParamColumns),
    code_table("op_kind", kOpKinds),             code_table("ops", kOpColumns),
    code_table("op_params", kOpParamColumns)};

// Reached only after a switch over a code matched none of its cases, which decode_net rules out.
[[noreturn]] inline void unknown_code(const char* what, int64_t code) {
    throw std::logic_error(std::string("unknown ") + what + " code " + std::to_string(code));
}

}  // namespace densefit
