# `cmake --install build --prefix DIR` gives a relocatable folder:
#   bin/shardquant                        the program
#   lib/libshardquant.so.X.Y (+ links)    the library: only the public API exported
#   include/shardquant/*.h                its headers (options, report, plan, progress, errors)
#   lib/cmake/shardquant/                 find_package(shardquant) -> shardquant::shardquant
#   lib/pkgconfig/shardquant.pc           pkg-config shardquant
#   lib/ also the shared libraries the binaries need that a bare machine may lack (oneTBB,
#   simdjson, liburing, zstd); binaries and the library find them through RPATH $ORIGIN/../lib.
# With -DSHARDQUANT_INSTALL_TESTS=ON, bin/ also gets the test and benchmark binaries and
# share/shardquant/tests the test data (the GPU-machine folder, bench/run_gpu_e2e.sh).
include(CMakePackageConfigHelpers)

set(SQ_INSTALL_TARGETS shardquant)
if(SHARDQUANT_INSTALL_TESTS)
  if(SHARDQUANT_BUILD_TESTS)
    list(APPEND SQ_INSTALL_TARGETS shardquant_tests)
    if(TARGET shardquant_gpu_tests)
      list(APPEND SQ_INSTALL_TARGETS shardquant_gpu_tests)
    endif()
    install(DIRECTORY tests/data DESTINATION share/shardquant/tests)
  endif()
  if(SHARDQUANT_BUILD_BENCH)
    list(APPEND SQ_INSTALL_TARGETS ${SQ_BENCH_TARGETS})
  endif()
endif()
install(TARGETS ${SQ_INSTALL_TARGETS} RUNTIME DESTINATION bin)

install(TARGETS shardquant_shared EXPORT shardquantTargets
        LIBRARY DESTINATION lib
        INCLUDES DESTINATION include)
install(DIRECTORY include/shardquant DESTINATION include FILES_MATCHING PATTERN "*.h")
install(EXPORT shardquantTargets NAMESPACE shardquant:: DESTINATION lib/cmake/shardquant)
configure_package_config_file(cmake/shardquantConfig.cmake.in
  ${PROJECT_BINARY_DIR}/shardquantConfig.cmake INSTALL_DESTINATION lib/cmake/shardquant)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/shardquantConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/shardquantConfig.cmake
              ${PROJECT_BINARY_DIR}/shardquantConfigVersion.cmake
        DESTINATION lib/cmake/shardquant)
configure_file(cmake/shardquant.pc.in ${PROJECT_BINARY_DIR}/shardquant.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/shardquant.pc DESTINATION lib/pkgconfig)

set(SQ_INSTALLED_BINARIES "")
foreach(t ${SQ_INSTALL_TARGETS})
  list(APPEND SQ_INSTALLED_BINARIES "$<TARGET_FILE:${t}>")
endforeach()
install(CODE "
  file(GET_RUNTIME_DEPENDENCIES
    EXECUTABLES ${SQ_INSTALLED_BINARIES}
    LIBRARIES $<TARGET_FILE:shardquant_shared>
    RESOLVED_DEPENDENCIES_VAR sq_deps
    UNRESOLVED_DEPENDENCIES_VAR sq_unresolved
    PRE_EXCLUDE_REGEXES \"^libc\\\\.so\" \"^libm\\\\.so\" \"^libdl\\\\.so\" \"^librt\\\\.so\"
      \"^libpthread\\\\.so\" \"^ld-linux\" \"^libgcc_s\" \"^libstdc\\\\+\\\\+\" \"^libcuda\\\\.so\"
      \"^linux-vdso\" \"^libshardquant\\\\.so\"
    POST_EXCLUDE_REGEXES \"^/lib64/ld-linux\")
  foreach(dep \${sq_deps})
    file(INSTALL \${dep} DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib\" FOLLOW_SYMLINK_CHAIN)
  endforeach()
")
