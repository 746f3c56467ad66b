# `cmake --install build --prefix DIR` gives a relocatable folder: bin/ with the program, test
# and benchmark binaries, lib/ with the shared libraries they need that a bare machine may lack
# (oneTBB, simdjson, liburing, zstd). Binaries find them through RPATH $ORIGIN/../lib.
set(SQ_INSTALL_TARGETS shardquant)
if(SHARDQUANT_BUILD_TESTS)
  list(APPEND SQ_INSTALL_TARGETS shardquant_tests)
  if(TARGET shardquant_gpu_tests)
    list(APPEND SQ_INSTALL_TARGETS shardquant_gpu_tests)
  endif()
endif()
if(SHARDQUANT_BUILD_BENCH)
  list(APPEND SQ_INSTALL_TARGETS ${SQ_BENCH_TARGETS})
endif()
install(TARGETS ${SQ_INSTALL_TARGETS} RUNTIME DESTINATION bin)
if(SHARDQUANT_BUILD_TESTS)
  install(DIRECTORY tests/data DESTINATION share/shardquant/tests)
endif()

set(SQ_INSTALLED_BINARIES "")
foreach(t ${SQ_INSTALL_TARGETS})
  list(APPEND SQ_INSTALLED_BINARIES "$<TARGET_FILE:${t}>")
endforeach()
install(CODE "
  file(GET_RUNTIME_DEPENDENCIES
    EXECUTABLES ${SQ_INSTALLED_BINARIES}
    RESOLVED_DEPENDENCIES_VAR sq_deps
    UNRESOLVED_DEPENDENCIES_VAR sq_unresolved
    PRE_EXCLUDE_REGEXES \"^libc\\\\.so\" \"^libm\\\\.so\" \"^libdl\\\\.so\" \"^librt\\\\.so\"
      \"^libpthread\\\\.so\" \"^ld-linux\" \"^libgcc_s\" \"^libstdc\\\\+\\\\+\" \"^libcuda\\\\.so\"
      \"^linux-vdso\"
    POST_EXCLUDE_REGEXES \"^/lib64/ld-linux\")
  foreach(dep \${sq_deps})
    file(INSTALL \${dep} DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib\" FOLLOW_SYMLINK_CHAIN)
  endforeach()
")
