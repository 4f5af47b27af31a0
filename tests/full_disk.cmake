# A full disk during the run (tests/test_full_disk.sh): exit 1 with one line per group naming the
# file and errno, no deadlock, valid checkpoints and a bit-identical -restart; 1 and 2 ranks.
# Skipped (77) where a tmpfs cannot be mounted.
ntk_script_test(full_disk bash ${CMAKE_CURRENT_SOURCE_DIR}/test_full_disk.sh)
set_tests_properties(full_disk PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 900)
