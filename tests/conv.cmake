# Wide-ResNet kernels (src/core/conv.c): conv2d, batch norm (split statistics), pooling,
# residual add.
ntk_unit_test(test_conv)
# Independent check against torch.nn.functional in float64 (test_conv --dump writes the cases).
ntk_script_test(torch_conv ${NTK_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_conv_check.py
                $<TARGET_FILE:test_conv>)
