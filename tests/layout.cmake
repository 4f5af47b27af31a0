# -ranks_per_run auto and -plan_only (docs/scaling.md): plans against an independent model and
# bound, auto against fixed layouts on 1, 2 and 4 ranks, restart under auto bit for bit.
ntk_script_test(layout bash ${CMAKE_CURRENT_SOURCE_DIR}/test_layout.sh)
set_tests_properties(layout PROPERTIES TIMEOUT 600)
