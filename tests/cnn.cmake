# The plain CNN of the analytic CNTK (-arch cnn, src/core/model.c): structure, gradient, J v and H v
# against finite differences, the empirical NTK and NNGP of wide CNNs against cntk.c (test_cnn); the
# outputs, loss, gradient and J v against PyTorch float64 on the same weights (torch_cnn); and the
# binary's runs: 1 and 4 ranks, restart bit for bit, the kernel run beside the finite CNNs.
ntk_unit_test(test_cnn)
set_tests_properties(test_cnn PROPERTIES TIMEOUT 300)
ntk_script_test(torch_cnn ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_cnn_check.py $<TARGET_FILE:test_cnn>)
ntk_script_test(cnn_runs bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cnn_runs.sh)
set_tests_properties(cnn_runs PROPERTIES TIMEOUT 300)
