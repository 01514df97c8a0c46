#!/usr/bin/env python3
"""check_layers: every #include "LAYER/..." in src/ points down.

The layers of docs/architecture.md, each with the layers it may include
(its own always). Tests (*_test.cc) may include what their layer may, plus
the testing helpers of lower layers. Prints each upward or unknown include
and exits 1; prints the layers and exits 0 when the house is in order.
"""

import os
import re
import sys

# layer -> layers directly below it that it may use; what those may use is allowed too.
BELOW = {
    "base": [],
    "sys": ["base"],
    "io": ["base"],
    "http": ["io"],
    "policy": ["base"],
    "agent": ["sys", "base"],
    "isolation": ["sys", "base"],
    "net": ["sys", "base"],
    "manager": ["isolation", "net", "policy", "agent", "io"],
    "proxy": ["manager", "net", "policy", "http"],
    "preview": ["manager", "net", "http"],
    "api": ["preview", "proxy", "manager"],
    "cli": ["sys", "base"],
    "daemon": ["api", "cli"],
}


def allowed(layer, seen=None):
    seen = set() if seen is None else seen
    if layer in seen:
        return seen
    seen.add(layer)
    for lower in BELOW[layer]:
        allowed(lower, seen)
    return seen


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    include = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/')
    problems = []
    for layer in sorted(os.listdir(root)):
        path = os.path.join(root, layer)
        if not os.path.isdir(path):
            continue
        if layer not in BELOW:
            problems.append(f"src/{layer}/: a directory that is not a layer of scripts/check_layers.py")
            continue
        ok = allowed(layer)
        for dirpath, _, files in os.walk(path):
            for name in sorted(files):
                if not name.endswith((".h", ".cc")):
                    continue
                file = os.path.join(dirpath, name)
                with open(file, encoding="utf-8") as f:
                    for n, line in enumerate(f, 1):
                        m = include.match(line)
                        if m and m.group(1) not in ok:
                            rel = os.path.relpath(file, os.path.join(root, ".."))
                            problems.append(f"{rel}:{n}: {layer} includes {m.group(1)}/, which is not below it")
    for p in problems:
        print(p)
    if problems:
        return 1
    print("layers in order: " + ", ".join(f"{k} -> {' '.join(v) or '-'}" for k, v in BELOW.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
