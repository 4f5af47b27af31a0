# One copy of the data per node (-data_shared, src/app/shared_data.c): bit for bit the same output
# with and without the window on 1 and 4 ranks, restart across the option, the probe batch against
# numpy, the memory check's share, and a window that cannot be made.
ntk_script_test(shared_data bash ${CMAKE_CURRENT_SOURCE_DIR}/test_shared_data.sh)
set_tests_properties(shared_data PROPERTIES ENVIRONMENT "${NTK_TEST_ENV};NTK_FEATURES_BIN=$<TARGET_FILE:test_features_dump>" TIMEOUT 600)
