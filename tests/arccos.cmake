# The arc-cosine evaluation of the relu kernels (src/core/arccos.h): against glibc's acos and the
# closed forms in C, and against mpmath at 40 digits in Python.
ntk_unit_test(test_arccos)
ntk_script_test(inf_arccos_mpmath bash -c "$<TARGET_FILE:test_arccos> $<TARGET_FILE_DIR:test_arccos>/arccos_points.txt && ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/arccos_check.py $<TARGET_FILE_DIR:test_arccos>/arccos_points.txt")
set_tests_properties(inf_arccos_mpmath PROPERTIES TIMEOUT 300)
