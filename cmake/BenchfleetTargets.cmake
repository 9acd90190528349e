# Helpers that give every benchfleet target the same warnings and include root.
# Our own code builds with -Wall -Wextra -Werror; generated protobuf code does not.

function(benchfleet_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror -Wno-missing-field-initializers)
  target_include_directories(${target} PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>)
endfunction()

# benchfleet_library(NAME SOURCES ... DEPS ... [PRIVATE_DEPS ...])
# Creates benchfleet_NAME with the alias benchfleet::NAME.
function(benchfleet_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(benchfleet_${name} STATIC ${ARG_SOURCES})
  add_library(benchfleet::${name} ALIAS benchfleet_${name})
  benchfleet_defaults(benchfleet_${name})
  target_link_libraries(benchfleet_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# benchfleet_test(NAME SOURCES ... DEPS ... [LABELS ...])
function(benchfleet_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  benchfleet_defaults(${name})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT}
    LABELS "${ARG_LABELS}"
    ENVIRONMENT "BENCHFLEET_BUILD_DIR=${PROJECT_BINARY_DIR};BENCHFLEET_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()
