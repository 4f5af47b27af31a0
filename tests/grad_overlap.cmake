# The bucketed, overlapped gradient allreduce of data-parallel groups: bit-identical with and
# without overlap, equal to one rank's gradient to 1e-10, and the bucket counts -log_view reports.
ntk_script_test(grad_overlap bash ${CMAKE_CURRENT_SOURCE_DIR}/test_grad_overlap.sh)
set_tests_properties(grad_overlap PROPERTIES TIMEOUT 600)
