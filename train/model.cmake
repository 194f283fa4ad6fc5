# model.cmake: the trainer's numerical core (included by train/CMakeLists.txt).
#   ft_model: ops vtable + CPU backend (im2col + OpenBLAS sgemm, thread pool), IResNet with
#             explicit forward/backward, margin softmax + Partial FC, SGD.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)

add_library(ft_model STATIC
  ${CMAKE_CURRENT_LIST_DIR}/ops_cpu.c
  ${CMAKE_CURRENT_LIST_DIR}/ops_cpu_conv.c
  ${CMAKE_CURRENT_LIST_DIR}/ops_cpu_norm.c
  ${CMAKE_CURRENT_LIST_DIR}/ops_cpu_softmax.c
  ${CMAKE_CURRENT_LIST_DIR}/iresnet.c
  ${CMAKE_CURRENT_LIST_DIR}/pfc.c
  ${CMAKE_CURRENT_LIST_DIR}/optim.c)
target_include_directories(ft_model PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(ft_model PUBLIC ft_common PkgConfig::OPENBLAS Threads::Threads ${M_LIB})

# Benchmark (not a test): a full CPU training step, see bench/train_cpu_step.c.
if(EXISTS ${CMAKE_SOURCE_DIR}/bench/train_cpu_step.c)
  add_executable(ft-bench-train ${CMAKE_SOURCE_DIR}/bench/train_cpu_step.c)
  target_link_libraries(ft-bench-train PRIVATE ft_model ft_common)
endif()
