# Every C unit test is listed once, in engine/tests/test_list.h; each runs as
# its own ctest case in its own process (corral_tests NAME), with a timeout.
# A line added to the list configures again, so that ctest knows the test.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/engine/tests/test_list.h)
file(STRINGS ${CMAKE_SOURCE_DIR}/engine/tests/test_list.h test_lines REGEX "^[ ]*TEST_ENTRY\\(")
foreach(line ${test_lines})
  string(REGEX REPLACE "^[ ]*TEST_ENTRY\\(([a-z0-9_]+)\\).*" "\\1" name "${line}")
  add_test(NAME ${name} COMMAND corral_tests ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT 60)
endforeach()
