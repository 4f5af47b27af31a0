# Loss Hessian (src/ops/hessian.c, model_hvp/model_gnvp in src/core/model.c, R-operator kernels
# in src/core/layers.c): products against finite differences, a closed form and explicit J^T J / N; the
# shell operator, Krylov-Schur, Hutchinson and SLQ against dense LAPACK; at 1 and 4 ranks.
ntk_mpi_test(test_hessian 1 4)
# The NTK and the Hessian along training (inputs/fc_hessian.in at width 512): s_0 ~ lambda_0, lazy
# runs stay put, the catapult lowers both below 2/eta.
ntk_script_test(hessian_science bash ${CMAKE_CURRENT_SOURCE_DIR}/test_hessian_science.sh)
