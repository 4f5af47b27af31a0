ntk_mpi_test(test_output 1 4)
