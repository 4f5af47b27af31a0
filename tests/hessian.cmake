# Loss Hessian (src/hessian.c, model_hvp/model_gnvp in src/model.c, R-operator kernels in
# src/layers.c): products against finite differences, a closed form and explicit J^T J / N; the
# shell operator, Krylov-Schur, Hutchinson and SLQ against dense LAPACK; at 1 and 4 ranks.
ntk_mpi_test(test_hessian 1 4)
