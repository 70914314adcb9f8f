# Warnings and sanitizers for every ferry target (applied through ferry_set_target_options).
add_library(ferry_options INTERFACE)
target_compile_options(ferry_options INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wno-missing-field-initializers>
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-Wall>)
if(FERRY_HAVE_CUDA)
  target_compile_definitions(ferry_options INTERFACE FERRY_HAVE_CUDA=1)
endif()
if(FERRY_SANITIZE)
  target_compile_options(ferry_options INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer>)
  target_link_options(ferry_options INTERFACE -fsanitize=address,undefined)
endif()
