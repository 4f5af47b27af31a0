# Feature-learning measures (features/, docs/conventions.md "Feature learning"): every measure
# against numpy on the net's own weights at 1 and 4 ranks, rank-count agreement, exact restart.
add_executable(test_features_dump test_features_dump.c)
target_link_libraries(test_features_dump PRIVATE ntkpar)
ntk_script_test(features bash ${CMAKE_CURRENT_SOURCE_DIR}/test_features.sh)
set_tests_properties(features PROPERTIES ENVIRONMENT "${NTK_TEST_ENV};NTK_FEATURES_BIN=$<TARGET_FILE:test_features_dump>" TIMEOUT 600)

# The coordinate check's width exponents over 1024..4096 against the expected ones (a science check
# of a few minutes: not in the sanitizer pass).
ntk_script_test(coord_check_science bash ${CMAKE_CURRENT_SOURCE_DIR}/test_coord_check.sh)
set_tests_properties(coord_check_science PROPERTIES TIMEOUT 1200)
