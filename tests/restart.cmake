# Checkpoints, exact restart after kill -9 and signals, refusals, sweep parts (docs/checkpoint.md).
ntk_script_test(restart bash ${CMAKE_CURRENT_SOURCE_DIR}/test_restart.sh)
set_tests_properties(restart PROPERTIES TIMEOUT 600)
