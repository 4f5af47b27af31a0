"""What the numpy checkers of tests/ share: counting checks, and closeness with finiteness."""
import numpy as np

passed = failed = 0


def check(name, ok, detail=""):
    """Counts one check; prints "FAIL name detail" when it fails."""
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def expect(ok, what):
    """check() with the condition first, as most checkers word it: expect(x > 0, "x positive")."""
    check(what, ok)


def summary():
    """Prints "N passed, M failed"; returns the exit code (1 if anything failed)."""
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def close(a, b, rtol=1e-10, atol=0.0):
    """Every a finite and within rtol |b| + atol of b."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(np.isfinite(a)) and np.all(np.abs(a - b) <= rtol * np.abs(b) + atol))


def summary_exit():
    import sys
    sys.exit(summary())
