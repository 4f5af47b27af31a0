# Post-processing (postproc/ntkpost, postproc/ntkplot) on synthetic files in the HDF5 layout: under
# pytest when NTK_PYTHON has it (one test per group of checks), else tests/test_postproc.py standalone.
execute_process(COMMAND ${NTK_PYTHON} -c "import pytest" RESULT_VARIABLE NTK_PYTEST_MISSING
                OUTPUT_QUIET ERROR_QUIET)
if(NTK_PYTEST_MISSING EQUAL 0)
  ntk_script_test(postproc_synthetic ${NTK_PYTHON} -m pytest -q -p no:cacheprovider
                  ${CMAKE_CURRENT_SOURCE_DIR}/test_postproc.py)
else()
  message(STATUS "${NTK_PYTHON} has no pytest (python3-pytest): postproc_synthetic runs standalone")
  ntk_script_test(postproc_synthetic ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_postproc.py)
endif()
# The same checks on real ntkhpc output (a sweep, and a job killed mid-sweep).
ntk_script_test(postproc_real bash ${CMAKE_CURRENT_SOURCE_DIR}/test_postproc_real.sh)
# pip install ./postproc offline into a venv; the console script ntkplot and ntkpost.load.
ntk_script_test(postproc_package bash ${CMAKE_CURRENT_SOURCE_DIR}/test_postproc_package.sh)
# muTransfer's best learning rate per width and its figure (postproc/ntkpost/transfer.py).
ntk_script_test(postproc_transfer ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_transfer.py)
# The coordinate check's width exponents and figure (postproc/ntkpost/coordcheck.py) on synthetic power laws.
ntk_script_test(postproc_coordcheck ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_coordcheck.py)
