# Data augmentation (src/core/augment.c): random crop with zero padding and horizontal flip
# against a naive pad-crop-flip, identities, uniformity of the counter-based draws, chunking independence.
ntk_unit_test(test_augment)
# End to end: -augment with sgd and gd on Fashion-MNIST and CIFAR-10-shaped data, 1 vs 4 ranks.
ntk_script_test(augment_ranks bash ${CMAKE_CURRENT_SOURCE_DIR}/test_augment_run.sh)
# The Wide-ResNet step benchmark driver (benchmarks/bench_wrn_step.py; not run by ctest).
include(${PROJECT_SOURCE_DIR}/benchmarks/bench_wrn_step.cmake)
