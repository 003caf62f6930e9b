# Turns admin/dashboard.html into a C++ source file at build time: the page
# as two string literals, kDashboardHead and kDashboardBody (see
# admin/dashboard_page.h), split where "{{version}}" stands; the version is
# inserted there, HTML-escaped, when the page is served. Whatever stands
# before "<!DOCTYPE html>" (notes for whoever edits the page) is left out.
#
#   cmake -DINPUT=admin/dashboard.html -DOUTPUT=dashboard_page.cc -P admin/embed_dashboard.cmake
#
# Every byte is written as a \xNN escape: nothing in the page needs quoting.
set(start_text "<!DOCTYPE html>")
set(marker_text "{{version}}")

file(READ "${INPUT}" page)
string(FIND "${page}" "${start_text}" start)
string(FIND "${page}" "${marker_text}" marker)
string(FIND "${page}" "${marker_text}" last_marker REVERSE)
if(start EQUAL -1)
  message(FATAL_ERROR "${INPUT}: no \"${start_text}\"")
endif()
if(marker LESS start OR NOT marker EQUAL last_marker)
  message(FATAL_ERROR "${INPUT}: \"${marker_text}\" must stand exactly once, after \"${start_text}\"")
endif()
string(LENGTH "${marker_text}" marker_length)
math(EXPR head_length "${marker} - ${start}")
math(EXPR body_offset "${marker} + ${marker_length}")
file(READ "${INPUT}" head_hex OFFSET ${start} LIMIT ${head_length} HEX)
file(READ "${INPUT}" body_hex OFFSET ${body_offset} HEX)

# One line of the C++ source per 16 bytes of the page.
function(to_literal hex out)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" escaped "${hex}")
  string(REPEAT "\\\\x.." 16 line)
  string(REGEX REPLACE "${line}" "\\0\"\n    \"" escaped "${escaped}")
  set(${out} "\"${escaped}\"" PARENT_SCOPE)
endfunction()
to_literal("${head_hex}" head_literal)
to_literal("${body_hex}" body_literal)

file(WRITE "${OUTPUT}.tmp" "// Generated from admin/dashboard.html by admin/embed_dashboard.cmake: do not edit.
#include \"admin/dashboard_page.h\"

namespace poolgate {

namespace {

constexpr char kHead[] =
    ${head_literal};

constexpr char kBody[] =
    ${body_literal};

}  // namespace

const std::string_view kDashboardHead(kHead, sizeof kHead - 1);
const std::string_view kDashboardBody(kBody, sizeof kBody - 1);

}  // namespace poolgate
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
