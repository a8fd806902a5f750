# Helpers over the project's own targets, walking the directory tree (no global
# list to append to: each target declares its own dependencies).

# quiclab_targets(<out> <dir> <type>...): targets defined in <dir> and below whose
# TYPE is one of <type> (STATIC_LIBRARY, EXECUTABLE ...).
function(quiclab_targets out dir)
  set(found)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t ${targets})
    get_target_property(type ${t} TYPE)
    if(type IN_LIST ARGN)
      list(APPEND found ${t})
    endif()
  endforeach()
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(sub ${subdirs})
    quiclab_targets(more ${sub} ${ARGN})
    list(APPEND found ${more})
  endforeach()
  set(${out} ${found} PARENT_SCOPE)
endfunction()

# quiclab_write_link_graph(<file>): one line per project library and executable,
#   <name>\t<type>\t<sources;...>\t<LINK_LIBRARIES;...>\t<INTERFACE_LINK_LIBRARIES;...>
# read by tests/build/check_link_deps.py, which checks the links against the
# #include lines of each target's sources.
function(quiclab_write_link_graph file)
  quiclab_targets(targets ${PROJECT_SOURCE_DIR} STATIC_LIBRARY EXECUTABLE)
  set(text)
  foreach(t ${targets})
    get_target_property(type ${t} TYPE)
    get_target_property(dir ${t} SOURCE_DIR)
    get_target_property(sources ${t} SOURCES)
    set(abs)
    foreach(s ${sources})
      cmake_path(ABSOLUTE_PATH s BASE_DIRECTORY ${dir} NORMALIZE OUTPUT_VARIABLE a)
      list(APPEND abs ${a})
    endforeach()
    get_target_property(link ${t} LINK_LIBRARIES)
    get_target_property(iface ${t} INTERFACE_LINK_LIBRARIES)
    foreach(v link iface)
      if(NOT ${v})
        set(${v} "")
      endif()
    endforeach()
    string(APPEND text "${t}\t${type}\t${abs}\t${link}\t${iface}\n")
  endforeach()
  file(WRITE ${file} "${text}")
endfunction()
