# Model graph, parameter table and derivatives (src/core/model.c).
ntk_unit_test(test_model)

# Independent check against PyTorch autograd: the C helper writes config, theta, data, loss and
# gradient; the script rebuilds the net in torch float64 and compares.
add_executable(test_torch_fc test_torch_fc.c)
target_link_libraries(test_torch_fc PRIVATE ntkcore)
ntk_script_test(torch_fc ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_fc_check.py
                $<TARGET_FILE:test_torch_fc>)

# Infinite-width NNGP and NTK kernels (src/core/inf_kernels.c) against integrals and wide nets.
ntk_unit_test(test_inf_kernels)
