"""arccos_fast (src/core/arccos.h) against mpmath's acos at 40 digits, on the points test_arccos
writes (uniform over [-1, 1], clustered at +-1 and at the branch points +-1/2): at most 1.5 ulp
(arccos.h states 1.12), and a mean below 0.5 ulp.

usage: arccos_check.py FILE (written by test_arccos FILE)"""
import sys

import mpmath as mp
import numpy as np

mp.mp.dps = 40
worst, at, total, n = 0.0, None, 0.0, 0
for line in open(sys.argv[1]):
    r, g = (float.fromhex(v) for v in line.split())
    ex = mp.acos(mp.mpf(r))
    ulp = float(np.spacing(float(ex))) if ex != 0 else 5e-324
    e = float(abs(mp.mpf(g) - ex)) / ulp
    total += e
    n += 1
    if e > worst:
        worst, at = e, r
print("arccos_fast vs mpmath over %d points: max %.3f ulp at %r, mean %.3f ulp" % (n, worst, at, total / n))
ok = n > 10000 and worst <= 1.5 and total / n < 0.5
print("arccos_check: %s" % ("ok" if ok else "FAILED"))
sys.exit(0 if ok else 1)
