ntk_mpi_test(test_output 1 4)

# The output describes itself: it opens in xarray (h5netcdf) as it is, and docs/output.md lists
# everything in it (and nothing that is not).
ntk_script_test(output_xarray bash ${CMAKE_CURRENT_SOURCE_DIR}/test_output_xarray.sh)
