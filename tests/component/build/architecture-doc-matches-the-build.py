#!/usr/bin/env python3
"""docs/architecture.md's dependency table is the build's: for every folder
of lib/, writers/ and providers/ that builds a static library, the row of
that folder lists exactly the dependency objects its static_library() calls use
in its meson.build (ours by folder, external ones by library name), and no
such folder is missing from the table (issue 10).

Usage: architecture-doc-matches-the-build.py SOURCE_ROOT"""
import os
import re
import sys

DEPS = {
    'util_dep': 'lib/util', 'coordinator_dep': 'lib/coordinator',
    'repo_dep': 'lib/repo', 'datapath_dep': 'lib/datapath',
    'requester_dep': 'lib/requester', 'exec_writer_dep': 'writers/exec',
    'file_provider_dep': 'providers/file',
    'qemu_provider_dep': 'providers/qemu',
    'vm_writer_dep': 'writers/libvirt',
    'guestfiles_dep': 'lib/guestfiles', 'guestfs_dep': 'libguestfs',
    'jsonc_dep': 'json-c', 'libcrypto_dep': 'OpenSSL libcrypto',
    'libsodium_dep': 'libsodium', 'libzstd_dep': 'zstd', 'libxxhash_dep': 'xxHash', 'librados_dep': 'librados', 'librbd_dep': 'librbd', 'libnbd_dep': 'libnbd', 'libvirt_dep': 'libvirt',
    'libvirt_qemu_dep': 'libvirt-qemu',
    'libcurl_dep': 'libcurl', 'libxml_dep': 'libxml2', 'threads_dep': 'threads', 'inih_dep': 'inih',
}


def build_deps(path):
    """What the static_library() calls of a meson.build depend on, or None
    when it has none."""
    text = open(path).read()
    names, found = [], False
    for m in re.finditer(r'static_library\(', text):
        found = True
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {'(': 1, ')': -1}.get(text[i], 0)
            i += 1
        d = re.search(r'dependencies\s*:\s*(\[[^\]]*\]|\w+)', text[m.end():i])
        if d:
            names += re.findall(r'\w+', d.group(1))
    if not found:
        return None
    unknown = [n for n in names if n not in DEPS]
    if unknown:
        sys.exit(f'FAIL: {path}: dependency objects this test does not know: '
                 f'{unknown} (add them to DEPS)')
    return {DEPS[n] for n in names}


def doc_rows(path):
    rows = {}
    for line in open(path):
        m = re.match(r'\|\s*`([a-z]+/[a-z-]+)`\s*\|([^|]*)\|', line)
        if m:
            uses = {u.strip().strip('`') for u in m.group(2).split(',')}
            rows[m.group(1)] = {u for u in uses if u and u != 'nothing'}
    return rows


root = sys.argv[1]
rows = doc_rows(os.path.join(root, 'docs', 'architecture.md'))
failed = False
checked = 0
for top in ('lib', 'writers', 'providers'):
    for name in sorted(os.listdir(os.path.join(root, top))):
        folder = f'{top}/{name}'
        mb = os.path.join(root, folder, 'meson.build')
        if not os.path.exists(mb):
            continue
        deps = build_deps(mb)
        if deps is None:
            continue
        if folder not in rows:
            print(f'FAIL: {folder} builds a library but has no row in '
                  f'docs/architecture.md; its meson.build uses: '
                  f'{", ".join(sorted(deps)) or "nothing"}')
            failed = True
        elif rows[folder] != deps:
            print(f'FAIL: {folder}: docs/architecture.md says '
                  f'{sorted(rows[folder])}, its meson.build uses {sorted(deps)}')
            failed = True
        else:
            checked += 1
if failed:
    sys.exit(1)
print(f'ok - the dependency rules of {checked} folders match their meson.build')
