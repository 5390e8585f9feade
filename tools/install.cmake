# What `cmake --install` puts under the prefix (DESTDIR honoured):
#   lib/lua/5.4/corral.so       the Lua module, where stock lua5.4 looks
#   bin/corral                  the executable (and spawn's children)
#   lib/libcorral.a             engine and module, for hosts (corral/embed.h)
#   include/corral.h, include/corral/*.h, lib/pkgconfig/corral.pc
#   share/man/man1/corral.1, share/doc/corral/
# Uninstall: `cmake --build build --target uninstall`, with the DESTDIR of
# the install if it had one (install_manifest.txt names the files without it).
include(GNUInstallDirs)
file(STRINGS ${CMAKE_SOURCE_DIR}/engine/include/corral.h CORRAL_VERSION_LINE REGEX "define CORRAL_VERSION \"")
string(REGEX REPLACE ".*\"(.*)\".*" "\\1" CORRAL_VERSION_STRING "${CORRAL_VERSION_LINE}")
set(CORRAL_LUA_CMOD_DIR "lib/lua/5.4" CACHE STRING "Where the Lua module goes, under the prefix")
set(CORRAL_LIB_DIR "lib" CACHE STRING "Where libcorral and corral.pc go, under the prefix")

install(TARGETS corral_module LIBRARY DESTINATION ${CORRAL_LUA_CMOD_DIR})
install(TARGETS corral RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS corral_lib ARCHIVE DESTINATION ${CORRAL_LIB_DIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/engine/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
file(RELATIVE_PATH CORRAL_PC_TO_PREFIX /${CORRAL_LIB_DIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" CORRAL_PC_TO_PREFIX "${CORRAL_PC_TO_PREFIX}")
# libcorral is static: what it links goes in Requires (the Redis backend's
# hiredis and libcrypto too, when it is built)
set(CORRAL_PC_REQUIRES "libuv lua5.4")
if(CORRAL_REDIS)
  string(APPEND CORRAL_PC_REQUIRES " hiredis libcrypto")
endif()
configure_file(${CMAKE_SOURCE_DIR}/tools/corral.pc.in ${CMAKE_BINARY_DIR}/corral.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/corral.pc DESTINATION ${CORRAL_LIB_DIR}/pkgconfig)
install(FILES ${CMAKE_SOURCE_DIR}/docs/corral.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
file(GLOB CORRAL_DOCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CORRAL_DOCS} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/examples/embed DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

add_custom_target(uninstall
  COMMAND ${CMAKE_COMMAND} -DMANIFEST=${CMAKE_BINARY_DIR}/install_manifest.txt
          -P ${CMAKE_SOURCE_DIR}/tools/uninstall.cmake
  COMMENT "Removing the files of the last install (install_manifest.txt)")
