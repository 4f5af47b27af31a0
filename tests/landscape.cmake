# Loss landscapes (docs/landscape.md): values against numpy at grid points, filter normalisation,
# projections, PCA vs numpy's SVD, paths, a 21 x 11 analytic quadratic in file and figure; then
# kill -9 mid-surface and resume (bit-identical), 1 vs 4 ranks, bad input.
ntk_script_test(landscape ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_landscape.py)
set_tests_properties(landscape PROPERTIES TIMEOUT 300)
ntk_script_test(landscape_resume bash ${CMAKE_CURRENT_SOURCE_DIR}/test_landscape_resume.sh)
set_tests_properties(landscape_resume PROPERTIES TIMEOUT 300)
add_executable(test_landscape_dirs test_landscape_dirs.c)
target_link_libraries(test_landscape_dirs PRIVATE ntkcore)
add_test(NAME test_landscape_dirs COMMAND test_landscape_dirs)
set_tests_properties(test_landscape_dirs PROPERTIES ENVIRONMENT "${NTK_TEST_ENV}" LABELS unit)
# The affine first layer (src/landscape/landscape_eval.c) against the plain forward pass.
add_executable(test_landscape_eval test_landscape_eval.c)
target_link_libraries(test_landscape_eval PRIVATE ntkpar)
add_test(NAME test_landscape_eval COMMAND test_landscape_eval)
set_tests_properties(test_landscape_eval PROPERTIES ENVIRONMENT "${NTK_TEST_ENV}" LABELS unit)
# The affine first layer end to end: against numpy, the plain pass and other rank counts, 1-D and 2-D.
ntk_script_test(landscape_affine ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_landscape_affine.py)
set_tests_properties(landscape_affine PROPERTIES TIMEOUT 300)
