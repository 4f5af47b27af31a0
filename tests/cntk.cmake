# The analytic CNTK (src/core/cntk.c): optimised against the reference, and the tiny case against a
# numpy recursion written in the test and the empirical NTK of a wide CNN in PyTorch.
ntk_unit_test(test_cntk)
ntk_script_test(inf_cntk_numpy bash -c "$<TARGET_FILE:test_cntk> $<TARGET_FILE_DIR:test_cntk>/cntk_tiny.txt && ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/cntk_check.py $<TARGET_FILE_DIR:test_cntk>/cntk_tiny.txt")
set_tests_properties(inf_cntk_numpy PROPERTIES TIMEOUT 300)
