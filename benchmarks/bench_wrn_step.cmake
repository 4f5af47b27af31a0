# One SGD step of a Wide ResNet against PyTorch (not a test): driven by bench_wrn_step.py.
# Included from tests/augment.cmake because benchmarks/CMakeLists.txt belongs to another module.
add_executable(bench_wrn_step ${PROJECT_SOURCE_DIR}/benchmarks/bench_wrn_step.c)
target_link_libraries(bench_wrn_step PRIVATE ntkcore)
