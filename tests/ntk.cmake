# Empirical NTK (src/ops/ntk.c): shell operator, structured Gram matrix, Krylov-Schur and
# ScaLAPACK spectra against explicit J J^T / N and LAPACK, at 1 and 4 ranks.
ntk_mpi_test(test_ntk 1 4)

# The lambda_0 benchmark against PyTorch (not a test; driven by benchmarks/bench_ntk_lambda0.py).
# Built from here because benchmarks/CMakeLists.txt belongs to another module; it can move there.
add_executable(bench_ntk_lambda0 ${PROJECT_SOURCE_DIR}/benchmarks/bench_ntk_lambda0.c)
target_link_libraries(bench_ntk_lambda0 PRIVATE ntkpar)
