# Writes OUT (version.h) with the git commit of the source tree SRC, and rewrites it only when the
# commit changes, so a build recompiles app.c only then. Run at every build (CMakeLists.txt).
execute_process(COMMAND git -C "${SRC}" describe --always --dirty --abbrev=12
                OUTPUT_VARIABLE hash OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR hash STREQUAL "")
  set(hash "unknown") # not a git checkout (a release tarball)
endif()
set(text "/* Generated at build time by cmake/version.cmake: the commit ntkhpc was built from. */\n#define NTK_GIT_HASH \"${hash}\"\n")
set(old "")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
