# libFuzzer smoke run of the input-reader harnesses (tests/fuzz/, docs/robustness.md). Only with
# clang (libFuzzer); with any other compiler nothing is added. build.sh compiles the harnesses
# itself (with clang and the sanitizers), outside the normal build, then runs each on its seed
# corpus for a couple of thousand inputs.
if(CMAKE_C_COMPILER_ID MATCHES Clang)
  add_test(NAME fuzz_smoke
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/build.sh ${CMAKE_CURRENT_BINARY_DIR}/fuzz --smoke 2000)
  set_tests_properties(fuzz_smoke PROPERTIES ENVIRONMENT "${NTK_TEST_ENV};FUZZ_CC=${CMAKE_C_COMPILER}"
                       LABELS fuzz TIMEOUT 900)
endif()
