# provider-man.cmake - keyway-provider(5) from docs/provider.md, so the page
# and the guide cannot disagree: the settings table becomes SETTINGS and
# ENVIRONMENT, the example openssl.cnf becomes EXAMPLE; the rest of the page
# is keyway-provider.5.in.
#   cmake -DMD=docs/provider.md -DIN=keyway-provider.5.in -DOUT=keyway-provider.5
#         -DVERSION=0.1.0 -P provider-man.cmake
cmake_minimum_required(VERSION 3.25)
file(READ ${MD} md)

# md_to_roff(VAR TEXT): inline Markdown to roff.
function(md_to_roff var text)
  string(REPLACE "\\" "\\e" text "${text}")
  # A link into the guide ("below") points at the guide the package ships.
  string(REGEX REPLACE "\\[(below|above)\\]\\([^)]*\\)" "in provider.md" text "${text}")
  string(REGEX REPLACE "\\[([^]]*)\\]\\([^)]*\\)" "\\1" text "${text}")
  string(REGEX REPLACE "\\*\\*([^*]+)\\*\\*" "\\\\fB\\1\\\\fR" text "${text}")
  string(REGEX REPLACE "`([^`]+)`" "\\\\fB\\1\\\\fR" text "${text}")
  string(REGEX REPLACE "^([.'])" "\\\\&\\1" text "${text}")
  set(${var} "${text}" PARENT_SCOPE)
endfunction()

# md_from(VAR MARKER WHAT): the guide from MARKER on; fails naming WHAT if absent.
function(md_from var marker what)
  string(FIND "${md}" "${marker}" at)
  if(at LESS 0)
    message(FATAL_ERROR "${MD}: ${what} was not found")
  endif()
  string(SUBSTRING "${md}" ${at} -1 text)
  set(${var} "${text}" PARENT_SCOPE)
endfunction()

# The settings table: its header row, then rows up to the first blank line.
md_from(table "| `openssl.cnf` key | environment |" "the settings table")
string(FIND "${table}" "\n\n" end)
string(SUBSTRING "${table}" 0 ${end} table)
# ";" would split the list of rows: stand in for it until each row is read.
string(REPLACE ";" "@SEMI@" table "${table}")
string(REPLACE "\n" ";" rows "${table}")
list(REMOVE_AT rows 0 1)
set(settings "")
set(environment "")
foreach(row ${rows})
  string(REPLACE "@SEMI@" ";" row "${row}")
  if(NOT row MATCHES "^\\| *`([^`]+)` *\\| *`([^`]+)` *\\| *([^|]*[^ |]) *\\| *(.*[^ |]) *\\|$")
    message(FATAL_ERROR "${MD}: unexpected settings row: ${row}")
  endif()
  set(key "${CMAKE_MATCH_1}")
  set(env "${CMAKE_MATCH_2}")
  md_to_roff(default "${CMAKE_MATCH_3}")
  md_to_roff(meaning "${CMAKE_MATCH_4}")
  string(APPEND settings ".TP\n\\fB${key}\\fR (default: ${default})\n${meaning}\n")
  string(APPEND environment ".TP\n\\fB${env}\\fR\nOverrides \\fB${key}\\fR.\n")
endforeach()

# The example openssl.cnf: the first ini block after "Example `openssl.cnf`".
md_from(rest "Example `openssl.cnf`" "the example openssl.cnf")
string(REGEX MATCH "```ini\n(.*)" _ "${rest}")
set(example "${CMAKE_MATCH_1}")
string(FIND "${example}" "```" close)
string(SUBSTRING "${example}" 0 ${close} example)
string(REPLACE "\\" "\\e" example "${example}")
string(REGEX REPLACE "\n([.'])" "\n\\\\&\\1" example "${example}")
# roff: an empty line is vertical space by request, not by accident.
string(REPLACE "\n\n" "\n.sp\n" example "${example}")
string(REGEX REPLACE "\n$" "" settings "${settings}")
string(REGEX REPLACE "\n$" "" environment "${environment}")

file(READ ${IN} page)
string(REPLACE "@VERSION@" "${VERSION}" page "${page}")
string(REPLACE "@SETTINGS@" "${settings}" page "${page}")
string(REPLACE "@ENVIRONMENT@" "${environment}" page "${page}")
string(REPLACE "@EXAMPLE@" "${example}" page "${page}")
file(WRITE ${OUT} "${page}")
