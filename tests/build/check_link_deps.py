#!/usr/bin/env python3
"""Checks every project target's CMake links against its #include lines.

Usage: check_link_deps.py SOURCE_DIR LINK_GRAPH_TSV

LINK_GRAPH_TSV is written at configure time by quiclab_write_link_graph()
(cmake/QuiclabTargets.cmake): one line per library and executable with its
sources, LINK_LIBRARIES and INTERFACE_LINK_LIBRARIES.

A header belongs to the library that compiles its .cpp sibling, else to the
one library with sources in its folder; other headers (tests/h2/support.hpp,
app/commands.hpp ...) are part of whichever target includes them. Fails when
  - a target includes a library's header but neither links it nor gets it
    through a PUBLIC dependency;
  - a library's header includes another library's header that is not PUBLIC;
  - a target links a project library it includes nothing from;
  - the project libraries' link graph has a cycle;
  - a CMake file appends to or reads a global list of libraries again.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)
LINK_ONLY = re.compile(r'^\$<LINK_ONLY:([^>]+)>$')


def main():
    root, graph_file = os.path.realpath(sys.argv[1]), sys.argv[2]
    errors = []

    targets = {}
    with open(graph_file) as f:
        for line in f:
            name, kind, sources, link, iface = (line.rstrip('\n').split('\t') + [''] * 5)[:5]
            split = lambda s: [x for x in s.split(';') if x]
            targets[name] = dict(kind=kind, sources=[os.path.realpath(s) for s in split(sources)],
                                 link=split(link), iface=split(iface))
    libs = {n for n, t in targets.items() if t['kind'] == 'STATIC_LIBRARY'}
    if len(libs) < 5 or len(targets) - len(libs) < 5:
        errors.append(f'{graph_file}: only {len(libs)} libraries and {len(targets) - len(libs)} executables')

    # Which library owns a project file.
    owner = {}
    lib_dirs = {}
    for lib in libs:
        for s in targets[lib]['sources']:
            owner[s] = lib
            lib_dirs.setdefault(os.path.dirname(s), set()).add(lib)

    def owner_of(path):
        if path in owner:
            return owner[path]
        stem = os.path.splitext(path)[0]
        for ext in ('.cpp', '.cc'):
            if stem + ext in owner:
                return owner[stem + ext]
        in_dir = lib_dirs.get(os.path.dirname(path), set())
        return next(iter(in_dir)) if len(in_dir) == 1 else None

    def includes(path):
        with open(path, errors='replace') as f:
            text = f.read()
        for inc in INCLUDE.findall(text):
            for base in (os.path.dirname(path), root):
                cand = os.path.realpath(os.path.join(base, inc))
                if cand.startswith(root + os.sep) and os.path.isfile(cand):
                    yield cand
                    break

    def used(files, self_lib):
        """Libraries whose headers `files` include, following headers of no library (and of self_lib)."""
        seen, found, todo = set(), {}, list(files)
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            for inc in includes(f):
                lib = owner_of(inc)
                if lib is None or lib == self_lib:
                    todo.append(inc)
                else:
                    found.setdefault(lib, os.path.relpath(f, root) + ' includes ' + os.path.relpath(inc, root))
        return found

    def direct(t):
        return [x for x in targets[t]['link'] if x in libs]

    def public(lib):
        return [x for x in targets[lib]['iface'] if x in libs and not LINK_ONLY.match(x)]

    def public_closure(start):
        seen, todo = set(), list(start)
        while todo:
            x = todo.pop()
            if x not in seen:
                seen.add(x)
                todo.extend(public(x))
        return seen

    for name, t in sorted(targets.items()):
        srcs = [s for s in t['sources'] if os.path.isfile(s)]
        uses = used(srcs, name if name in libs else None)
        reach = public_closure(direct(name))
        for lib, why in sorted(uses.items()):
            if lib not in reach:
                errors.append(f'{name}: uses {lib} ({why}) but does not link it')
        for lib in direct(name):
            if lib not in uses:
                errors.append(f'{name}: links {lib} but includes none of its headers')
        if name in libs:
            headers = [p for p in (os.path.join(d, f) for d in {os.path.dirname(s) for s in srcs}
                                   for f in os.listdir(d) if f.endswith(('.hpp', '.h')))
                       if owner_of(p) == name]
            pub = public_closure(public(name))
            for lib, why in sorted(used(headers, name).items()):
                if lib not in pub:
                    errors.append(f'{name}: its header uses {lib} ({why}): link it PUBLIC')

    # No cycle among the libraries (CMake links static cycles silently).
    state = {}

    def visit(lib, path):
        state[lib] = 'open'
        for dep in direct(lib):
            if state.get(dep) == 'open':
                errors.append('link cycle: ' + ' -> '.join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[lib] = 'done'

    for lib in sorted(libs):
        if lib not in state:
            visit(lib, [lib])

    # The global list that linked everything into everything stays gone.
    word = re.compile(r'\bQUICLAB' + r'_LIBS\b')
    for d, subdirs, names in os.walk(root):
        # Not the build trees at the top (build/, build-asan/ ...) nor .git.
        subdirs[:] = [s for s in subdirs if not s.startswith('.') and not (d == root and s.startswith('build'))]
        for n in names:
            if n == 'CMakeLists.txt' or n.endswith('.cmake'):
                path = os.path.join(d, n)
                with open(path, errors='replace') as f:
                    for no, line in enumerate(f, 1):
                        if word.search(line):
                            errors.append(f'global library list is back: {os.path.relpath(path, root)}:{no}: {line.strip()}')

    for e in errors:
        print('FAIL:', e)
    if errors:
        return 1
    print(f'link dependencies of {len(libs)} libraries and {len(targets) - len(libs)} executables match their includes')
    return 0


if __name__ == '__main__':
    sys.exit(main())
