#!/usr/bin/python3
"""The layering of src/ (docs/architecture.md): every `#include "x.h"` of a file in layer L names a
header of L or of a layer below it, every such header exists in exactly one layer, and the
headers' includes have no cycle. Fails with one line per violation.

  test_layers.py SOURCE_DIR
"""
import os
import re
import sys

LAYERS = ["core", "common", "ops", "io", "measure", "train", "landscape", "app"]  # lowest first
GENERATED = {"version.h"}  # written into the build tree (cmake/version.cmake)


def main():
    src = os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".", "src")
    where, includes = {}, {}
    for layer in os.listdir(src):
        if layer not in LAYERS:
            print(f"FAIL: src/{layer} is not a known layer ({', '.join(LAYERS)})")
            return 1
        for name in os.listdir(os.path.join(src, layer)):
            path = os.path.join(src, layer, name)
            if name.endswith(".h"):
                if name in where:
                    print(f"FAIL: {name} is in src/{where[name]} and src/{layer}")
                    return 1
                where[name] = layer
            if name.endswith((".h", ".c")):
                with open(path) as f:
                    includes[(layer, name)] = re.findall(r'^\s*#\s*include\s+"([^"]+)"', f.read(), re.M)
    problems, checked = [], 0
    for (layer, name), incs in sorted(includes.items()):
        for inc in incs:
            target = where.get(os.path.basename(inc))
            if target is None and os.path.basename(inc) in GENERATED:
                continue
            if target is None:
                problems.append(f"src/{layer}/{name} includes \"{inc}\", which is no header of src/")
                continue
            checked += 1
            if LAYERS.index(target) > LAYERS.index(layer):
                problems.append(f"src/{layer}/{name} includes {inc} of the higher layer src/{target}")
    # cycles among headers (depth-first search)
    graph = {n: [os.path.basename(i) for i in includes[(l, n)] if os.path.basename(i) in where]
             for (l, n) in includes if n.endswith(".h")}
    state = {}

    def visit(n, stack):
        state[n] = 1
        for m in graph.get(n, []):
            if state.get(m) == 1:
                problems.append("include cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    for p in problems:
        print("FAIL:", p)
    print(f"test_layers: {checked} includes of {len(includes)} files in {len(LAYERS)} layers;",
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
