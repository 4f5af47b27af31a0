# A real one-node Slurm (private munged, slurmctld, slurmd in a temporary directory): the
# jobscripts/wrn.sbatch job preempted twice (SIGUSR1 to the batch shell, scontrol requeue) must end
# with the output of an uninterrupted run. Needs root; installs slurm-wlm and munge with apt-get
# when missing (NTK_SLURM_INSTALL=0 in the environment forbids that); skipped (77) otherwise.
# Both preemptions hit a run held by -pause_at_step (no race with the job's end). About 100 s;
# RUN_SERIAL because it fills both cores with its own 2 ranks.
add_test(NAME slurm_requeue COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/slurm_test.sh)
set_tests_properties(slurm_requeue PROPERTIES ENVIRONMENT "${NTK_TEST_ENV}" LABELS "script;slurm"
                     SKIP_RETURN_CODE 77 TIMEOUT 600 RUN_SERIAL TRUE)
