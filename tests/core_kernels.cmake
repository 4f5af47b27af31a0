# Random numbers and layer kernels (src/rng.c, src/layers.c).
ntk_unit_test(test_rng)
ntk_unit_test(test_kernels)
