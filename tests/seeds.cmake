# Issue #18. swish, gelu, mish, the xent loss and fully connected batch norm at the model level:
# gradient, JVP, HVP against central differences, 1 and 4 ranks against one process (C), and every
# product against PyTorch autograd at both rank counts (python).
add_executable(test_seeds_model test_seeds_model.c)
target_link_libraries(test_seeds_model PRIVATE ntkpar)
ntk_script_test(torch_seeds ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_seeds_check.py ${MPIEXEC_EXECUTABLE}
                $<TARGET_FILE:test_seeds_model> 1 4)
# The Li-Arora equivalence (docs/li_arora.md) with ntkhpc's optimizer and schedule: 100 steps of heavy
# ball with weight decay against the exponential schedule with the exact initial velocity.
ntk_mpi_test(test_li_arora 1)
# The new options through the binary: xent recorded, -freeze, exp and one-cycle schedules (torch's
# OneCycleLR), fc batch norm on 1 and 4 ranks, the Li-Arora pair of runs, bad values.
ntk_script_test(seeds_runs bash ${CMAKE_CURRENT_SOURCE_DIR}/test_seeds_runs.sh)
# The gradient-Hessian alignment (grad_alignment/) against central differences of the gradient, mse
# and xent, ntk and mup, with and without batch norm, on 1 and 3 ranks.
ntk_mpi_test(test_grad_alignment 1 3)
