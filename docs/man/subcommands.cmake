# subcommands.cmake - the [COMMANDS] section of keyway(1) from each
# subcommand's own --help, so the page never disagrees with the program.
#   cmake -DKEYWAY=path/to/keyway -DOUT=file.h2m -P subcommands.cmake
cmake_minimum_required(VERSION 3.25)
execute_process(COMMAND ${KEYWAY} --help OUTPUT_VARIABLE list RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${KEYWAY} --help failed")
endif()
# Command lines of `keyway --help`: two spaces, a lower-case name, a space.
string(REGEX MATCHALL "\n  [a-z]+ " names "${list}")
set(text "[COMMANDS]\nEach command takes its own options; \\fBkeyway help\\fR \\fICOMMAND\\fR prints them.\n")
foreach(n ${names})
  string(STRIP "${n}" n)
  if(n STREQUAL "help")
    continue()
  endif()
  execute_process(COMMAND ${KEYWAY} ${n} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${KEYWAY} ${n} --help failed")
  endif()
  # roff: a backslash is \e, a line starting with . or ' must not be a request.
  string(REPLACE "\\" "\\e" help "${help}")
  string(REGEX REPLACE "\n([.'])" "\n\\\\&\\1" help "${help}")
  string(APPEND text ".SS \"keyway ${n}\"\n.nf\n${help}.fi\n")
endforeach()
file(WRITE ${OUT} "${text}")
