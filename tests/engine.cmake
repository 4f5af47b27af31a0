# End-to-end tests of the ntkhpc binary: decks and options, rank-count independence, divergence.
ntk_script_test(cli_bad_input bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.sh)
ntk_script_test(sweep_rank_independence bash ${CMAKE_CURRENT_SOURCE_DIR}/test_ranks.sh)
ntk_script_test(sweep_divergence bash ${CMAKE_CURRENT_SOURCE_DIR}/test_divergence.sh)
ntk_script_test(uv_model bash ${CMAKE_CURRENT_SOURCE_DIR}/test_uv.sh)

# -params abc and mf end to end: abc with the presets' exponents is the preset bit for bit, the
# abc symmetry and mean field == muP (one hidden layer) hold to 1e-10, lr-weighted against plain NTK.
ntk_script_test(parameterizations bash ${CMAKE_CURRENT_SOURCE_DIR}/test_parameterizations.sh)
set_tests_properties(parameterizations PROPERTIES TIMEOUT 900)

# -mup_limit: the exact infinite-width limit of the one-hidden-layer linear muP net against its
# moment recursion in numpy, and finite widths converging to it.
ntk_script_test(mup_limit bash ${CMAKE_CURRENT_SOURCE_DIR}/test_mup_limit.sh)
set_tests_properties(mup_limit PROPERTIES TIMEOUT 900)

# The bad-input table (tests/bad_input.table): one line, exit 2, no file touched, per row.
ntk_script_test(bad_input_table bash ${CMAKE_CURRENT_SOURCE_DIR}/test_bad_input.sh)
