# cmake -DMANIFEST=build/install_manifest.txt -P tools/uninstall.cmake:
# removes every file the last `cmake --install` wrote. The manifest names
# them without DESTDIR: give the same DESTDIR to the uninstall.
if(NOT EXISTS "${MANIFEST}")
  message(FATAL_ERROR "no ${MANIFEST}: nothing was installed from this build")
endif()
file(STRINGS "${MANIFEST}" files)
foreach(f ${files})
  set(f "$ENV{DESTDIR}${f}")
  if(EXISTS "${f}" OR IS_SYMLINK "${f}")
    file(REMOVE "${f}")
  endif()
endforeach()
list(LENGTH files n)
message(STATUS "removed the ${n} files of ${MANIFEST}")
