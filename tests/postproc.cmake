# Post-processing (postproc/ntkpost, postproc/ntkplot) on synthetic files in the HDF5 layout.
ntk_script_test(postproc_synthetic ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_postproc.py)
ntk_script_test(postproc_real bash ${CMAKE_CURRENT_SOURCE_DIR}/test_postproc_real.sh)
