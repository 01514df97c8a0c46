# cmake -DSRC=interpreter -DDEST=build/share/cove/interpreter -P copy_runners.cmake
# Copies the runners and their node_modules; files that did not change are left alone.
file(MAKE_DIRECTORY "${DEST}")
foreach(f python_runner.py node_runner.js package.json)
  if(EXISTS "${SRC}/${f}")
    file(COPY_FILE "${SRC}/${f}" "${DEST}/${f}" ONLY_IF_DIFFERENT)
  endif()
endforeach()
if(EXISTS "${SRC}/node_modules")
  file(COPY "${SRC}/node_modules" DESTINATION "${DEST}" FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()
