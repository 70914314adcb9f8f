# ferry_add_test(NAME sources...): a doctest executable with ferry's test main, registered with CTest.
# ferry_add_gpu_test(NAME sources...): the same, built only with the CUDA backend; skipped (exit 77) with no GPU.
function(ferry_add_test name)
  add_executable(${name} ${ARGN} ${PROJECT_SOURCE_DIR}/tests/support/test_main.cpp)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE ferry_runtime ferry_kernels doctest::doctest)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77)
endfunction()

function(ferry_add_gpu_test name)
  if(NOT FERRY_HAVE_CUDA)
    return()
  endif()
  ferry_add_test(${name} ${ARGN})
  target_compile_definitions(${name} PRIVATE FERRY_GPU_TEST=1)
  target_link_libraries(${name} PRIVATE CUDA::cudart)
endfunction()
