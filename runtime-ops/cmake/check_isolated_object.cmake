# The AVX2 object must not define symbols that the linker could merge with a copy from another
# translation unit (weak / COMDAT / unique symbols: inline functions and templates with external
# linkage). Such a merge could make the portable path execute AVX2 instructions.
# Usage: cmake -DNM=<nm> -DOBJS=<obj;...> -P check_isolated_object.cmake
foreach(obj IN LISTS OBJS)
  execute_process(COMMAND ${NM} -C --defined-only ${obj} OUTPUT_VARIABLE out RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "nm failed on ${obj}")
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  set(bad "")
  foreach(line IN LISTS lines)
    # DW.ref.* are data (personality-routine pointers), not code: harmless.
    if(line MATCHES "^[0-9a-fA-F]* +[WVu] " AND NOT line MATCHES " DW\\.ref\\.")
      list(APPEND bad "${line}")
    endif()
  endforeach()
  if(bad)
    string(REPLACE ";" "\n  " badtxt "${bad}")
    message(FATAL_ERROR "${obj} defines mergeable symbols:\n  ${badtxt}")
  endif()
endforeach()
message(STATUS "avx2 object isolated: OK")
