# Random numbers, layer kernels and feature-learning kernels (src/core/rng.c, layers.c, feature_kernels.c).
ntk_unit_test(test_rng)
ntk_unit_test(test_kernels)
ntk_unit_test(test_feature_kernels)
