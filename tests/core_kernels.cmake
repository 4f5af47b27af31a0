# Random numbers and layer kernels (src/core/rng.c, src/core/layers.c).
ntk_unit_test(test_rng)
ntk_unit_test(test_kernels)
