# Checkpoints, exact restart after kill -9 and signals, refusals, sweep parts (docs/checkpoint.md).
ntk_script_test(restart bash ${CMAKE_CURRENT_SOURCE_DIR}/test_restart.sh)
set_tests_properties(restart PROPERTIES TIMEOUT 600)
# kill -9 at random moments over observed events (the -pause_at_step hook), seeded; the short CI
# form (3 kills). The long form: NTK_KILLS=50 bash tests/test_kill_campaign.sh (docs/robustness.md).
ntk_script_test(kill_campaign bash ${CMAKE_CURRENT_SOURCE_DIR}/test_kill_campaign.sh)
set_tests_properties(kill_campaign PROPERTIES TIMEOUT 600)
