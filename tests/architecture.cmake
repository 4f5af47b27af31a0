# The architecture (docs/architecture.md): the layering of src/, and the measurement registry used
# from outside the code (a toy measurement in output, checkpoints, kill -9 + restart, postproc).
ntk_script_test(layers ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_layers.py ${PROJECT_SOURCE_DIR})

add_executable(test_registry test_registry.c)
target_link_libraries(test_registry PRIVATE ntkpar)
ntk_script_test(registry bash ${CMAKE_CURRENT_SOURCE_DIR}/test_registry.sh)
set_tests_properties(registry PROPERTIES ENVIRONMENT "${NTK_TEST_ENV};NTK_REGISTRY_BIN=$<TARGET_FILE:test_registry>" TIMEOUT 600)
