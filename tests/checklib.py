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


def _flat(a):
    """A float numpy vector from a numpy array or a (CPU) torch tensor."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, float).reshape(-1)


def rel_err(a, b):
    """||a - b|| / max(||a||, ||b||), inf if either has a non-finite entry (tests/testutil.h
    tu_rel_err); numpy arrays or torch tensors."""
    a, b = _flat(a), _flat(b)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("inf")
    d = float(np.linalg.norm(a - b))
    s = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    return d / s if s > 1e-300 else d


def summary_exit():
    import sys
    sys.exit(summary())
