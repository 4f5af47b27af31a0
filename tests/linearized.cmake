# The linearised model trained beside the network (src/measure/linearized.c): against numpy with an
# explicit Jacobian at 1 and 4 ranks, exact restart after kill -9, the frozen kernel's divergence
# rate above eta lambda_0 = 2. Uses test_features_dump (tests/features.cmake) for theta_t and the data.
ntk_script_test(linearized bash ${CMAKE_CURRENT_SOURCE_DIR}/test_linearized.sh)
set_tests_properties(linearized PROPERTIES ENVIRONMENT "${NTK_TEST_ENV};NTK_FEATURES_BIN=$<TARGET_FILE:test_features_dump>" TIMEOUT 600)

# The empirical NTK at initialisation against the analytic one (src/measure/ntk_analytic.c):
# every record against numpy at widths 1024..16384, 1, 2 and 4 ranks.
ntk_script_test(ntk_analytic bash ${CMAKE_CURRENT_SOURCE_DIR}/test_ntk_analytic.sh)
set_tests_properties(ntk_analytic PROPERTIES ENVIRONMENT "${NTK_TEST_ENV};NTK_FEATURES_BIN=$<TARGET_FILE:test_features_dump>" TIMEOUT 600)
