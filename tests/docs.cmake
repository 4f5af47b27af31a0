# The documentation: the repository is self-contained (docs/conventions.md holds the definitions;
# no tracked file names the conventions file or the shared directory outside the checkout).
ntk_script_test(self_contained bash ${CMAKE_CURRENT_SOURCE_DIR}/test_self_contained.sh)
