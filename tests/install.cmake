# cmake --install into a temporary prefix, and the installed ntkhpc, decks and ntkplot run there.
ntk_script_test(install bash ${CMAKE_CURRENT_SOURCE_DIR}/test_install.sh)
set_tests_properties(install PROPERTIES ENVIRONMENT "${NTK_TEST_ENV};NTK_BUILD_DIR=${PROJECT_BINARY_DIR}" TIMEOUT 600)
