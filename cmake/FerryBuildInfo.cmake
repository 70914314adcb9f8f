# The build's identity for reports (`ferry bench`, the bench_* programs): the git commit and whether tracked files had
# uncommitted changes, read at configure time (re-run cmake after committing to refresh). Where the tree has no git
# (a copy on another machine), pass -DFERRY_BENCH_GIT_SHA=<sha> [-DFERRY_BENCH_GIT_DIRTY=0|1]; otherwise "unknown".
if(NOT DEFINED FERRY_BENCH_GIT_SHA)
  execute_process(COMMAND git rev-parse HEAD WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    OUTPUT_VARIABLE FERRY_BENCH_GIT_SHA OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _ferry_git_rc)
  execute_process(COMMAND git status --porcelain --untracked-files=no WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    OUTPUT_VARIABLE _ferry_git_status ERROR_QUIET RESULT_VARIABLE _ferry_git_status_rc)
  if(NOT _ferry_git_rc EQUAL 0 OR FERRY_BENCH_GIT_SHA STREQUAL "")
    set(FERRY_BENCH_GIT_SHA "unknown")
  endif()
  if(_ferry_git_status STREQUAL "" OR NOT _ferry_git_status_rc EQUAL 0)
    set(FERRY_BENCH_GIT_DIRTY 0)
  else()
    set(FERRY_BENCH_GIT_DIRTY 1)
  endif()
endif()
if(NOT DEFINED FERRY_BENCH_GIT_DIRTY)
  set(FERRY_BENCH_GIT_DIRTY 0)
endif()
