# Wide ResNets in the model graph (src/core/model.c: conv, batch norm, pooling, residual add):
# structure, parameter table, and gradient / JVP / HVP of whole tiny WRNs against finite differences, the
# VJP-built Jacobian and an explicitly formed (subspace) Hessian, with and without batch norm.
ntk_unit_test(test_wrn)
# Batch norm across data-parallel ranks: the same tiny WRN sweep on 1 rank and as a group of 4
# gives the same trajectories, lambda_t and sharpness (tests/wrn_sweep.in).
ntk_script_test(wrn_rank_independence bash ${CMAKE_CURRENT_SOURCE_DIR}/test_wrn_ranks.sh)
# Independent check against PyTorch autograd: whole WRNs (with and without batch norm, every
# parameterization), outputs, loss, gradient and a JVP in float64 on the same weights.
add_executable(test_torch_wrn test_torch_wrn.c)
target_link_libraries(test_torch_wrn PRIVATE ntkcore)
ntk_script_test(torch_wrn ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_wrn_check.py
                $<TARGET_FILE:test_torch_wrn>)
# Batch norm at the model level across ranks: forward, VJP, JVP, HVP and Gauss-Newton products of a
# tiny WRN on a batch split over 1 and 4 ranks (one rank empty) equal the whole-batch computation.
ntk_mpi_test(test_wrn_mpi 1 4)
