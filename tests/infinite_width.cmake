# Infinite width (docs/infinite_width.md): the distributed Gram assembly (1 and 4 ranks, a kill and
# a resume, against numpy's closed form) and kernel regression in discrete time (against gradient
# descent on an explicitly linearised net, 1 and 4 ranks).
add_executable(test_kernel_inf test_kernel_inf.c)
target_link_libraries(test_kernel_inf PRIVATE ntkpar)
ntk_script_test(inf_kernel_regression ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/kernel_regression_check.py $<TARGET_FILE:test_kernel_inf>
                ${MPIEXEC_EXECUTABLE} 1 4)
set_tests_properties(inf_kernel_regression PROPERTIES TIMEOUT 300)
ntk_script_test(inf_kernel_regression_pdsyevd ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/kernel_regression_check.py $<TARGET_FILE:test_kernel_inf>
                ${MPIEXEC_EXECUTABLE} 1 4)
set_tests_properties(inf_kernel_regression_pdsyevd PROPERTIES ENVIRONMENT "${NTK_TEST_ENV};KREG_N=160" TIMEOUT 300)
ntk_script_test(inf_kernel_gram bash ${CMAKE_CURRENT_SOURCE_DIR}/test_kernel_gram.sh)
set_tests_properties(inf_kernel_gram PROPERTIES ENVIRONMENT "${NTK_TEST_ENV};NTK_KERNEL_BIN=$<TARGET_FILE:test_kernel_inf>" TIMEOUT 300)
ntk_script_test(inf_kernel_app bash ${CMAKE_CURRENT_SOURCE_DIR}/test_kernel_app.sh)
set_tests_properties(inf_kernel_app PROPERTIES TIMEOUT 300)
