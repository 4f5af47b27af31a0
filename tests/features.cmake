# Feature-learning measures (features/, docs/conventions.md "Feature learning"): every measure
# against numpy on the net's own weights at 1 and 4 ranks, rank-count agreement, exact restart.
add_executable(test_features_dump test_features_dump.c)
target_link_libraries(test_features_dump PRIVATE ntkpar)
ntk_script_test(features bash ${CMAKE_CURRENT_SOURCE_DIR}/test_features.sh)
set_tests_properties(features PROPERTIES ENVIRONMENT "${NTK_TEST_ENV};NTK_FEATURES_BIN=$<TARGET_FILE:test_features_dump>" TIMEOUT 600)
