# End-to-end tests of the ntkhpc binary: decks and options, rank-count independence, divergence.
ntk_script_test(cli_bad_input bash ${CMAKE_CURRENT_SOURCE_DIR}/test_cli.sh)
ntk_script_test(sweep_rank_independence bash ${CMAKE_CURRENT_SOURCE_DIR}/test_ranks.sh)
ntk_script_test(sweep_divergence bash ${CMAKE_CURRENT_SOURCE_DIR}/test_divergence.sh)
ntk_script_test(uv_model bash ${CMAKE_CURRENT_SOURCE_DIR}/test_uv.sh)
# The bad-input table (tests/bad_input.table): one line, exit 2, no file touched, per row.
ntk_script_test(bad_input_table bash ${CMAKE_CURRENT_SOURCE_DIR}/test_bad_input.sh)
