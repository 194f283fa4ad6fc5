# The CUDA emulator (emu.h): a static library with the runtime, cuBLAS, cuDNN and NCCL
# stand-ins, and ft_cuda_emu_sources(TARGET SRC...), which compiles CUDA sources of the
# product into TARGET with the host C++ compiler (through one .cpp per source that includes
# it, the prelude forced in first). Included from the top CMakeLists.txt with -DFT_CUDA_EMU=ON.
set(_emu ${CMAKE_CURRENT_LIST_DIR})
set(FT_CUDA_EMU_DIR ${_emu})
set(_emu_sources ${_emu}/runtime.cpp ${_emu}/cublas.cpp ${_emu}/cudnn.cpp)
find_path(FT_NCCL_INCLUDE nccl.h HINTS ${FT_CUDA_INCLUDE})
if(FT_NCCL_INCLUDE AND EXISTS ${_emu}/nccl.cpp)
  list(APPEND _emu_sources ${_emu}/nccl.cpp)
  set(FT_CUDA_EMU_NCCL ON)
else()
  set(FT_CUDA_EMU_NCCL OFF)
endif()
# -O2 in every build type: the sanitizer builds are Debug (-O0), where the emulated kernels
# and the library stand-ins would take minutes per test; the sanitizers instrument -O2 code
# all the same
set(_emu_flags -include ${_emu}/emu_prelude.h -ffp-contract=off -O2 -Wall -Wextra
               -Wno-unused-parameter)
if(FT_WERROR)
  list(APPEND _emu_flags -Werror)
endif()
set(FT_CUDA_EMU_FLAGS ${_emu_flags})
add_library(ft_cudaemu STATIC ${_emu_sources})
target_include_directories(ft_cudaemu PUBLIC ${FT_CUDA_INCLUDE} ${FT_CUDNN_INCLUDE}
                           ${FT_CUBLAS_INCLUDE} ${_emu})
if(FT_NCCL_INCLUDE)
  target_include_directories(ft_cudaemu PUBLIC ${FT_NCCL_INCLUDE})
endif()
target_compile_options(ft_cudaemu PRIVATE ${_emu_flags})
target_link_libraries(ft_cudaemu PUBLIC ft_common Threads::Threads)

function(ft_cuda_emu_sources target)
  foreach(src ${ARGN})
    get_filename_component(_abs ${src} ABSOLUTE)
    get_filename_component(_stem ${src} NAME_WE)
    set(_w ${CMAKE_CURRENT_BINARY_DIR}/cudaemu/${_stem}.cpp)
    file(WRITE ${_w}.in "#include \"${_abs}\"\n")
    configure_file(${_w}.in ${_w} COPYONLY)
    target_sources(${target} PRIVATE ${_w})
    set_source_files_properties(${_w} PROPERTIES COMPILE_OPTIONS "${_emu_flags}"
                                OBJECT_DEPENDS "${_abs};${_emu}/emu_prelude.h")
  endforeach()
  target_link_libraries(${target} PRIVATE ft_cudaemu)
endfunction()
