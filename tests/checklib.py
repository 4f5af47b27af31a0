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


def read_tensor_table(it):
    """A C helper's tensor table (tests/test_torch_*.c): "tensors N", then per tensor
    "tensor name offset size fan_in mult lr"; a dict by name."""
    table = {}
    for _ in range(int(next(it).split()[1])):
        t = next(it).split()
        table[t[1]] = dict(offset=int(t[2]), size=int(t[3]), fan_in=int(t[4]), mult=float(t[5]), lr=float(t[6]))
    return table


def read_arrays(it, keys):
    """The named arrays that follow, one line each ("key n v_1 ... v_n"), as torch tensors of the
    default dtype (the checkers set float64)."""
    import torch
    out = {}
    for key in keys:
        t = next(it).split()
        assert t[0] == key and int(t[1]) == len(t) - 2, (key, t[:2])
        out[key] = torch.tensor([float(v) for v in t[2:]])
    return out


def helper_cases(argv, helper, parse):
    """The cases a C helper writes (tests/test_torch_*.c): argv must be [script, path of the helper],
    else the usage line; the helper writes to a temporary file, which parse reads."""
    import os
    import subprocess
    import sys
    import tempfile
    if len(argv) != 2:
        sys.exit("usage: %s PATH_TO_%s" % (os.path.basename(argv[0]), helper))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cases.txt")
        subprocess.run([argv[1], path], check=True, stdout=subprocess.DEVNULL)
        return parse(path)


def autograd_errors(c, network, x):
    """torch autograd at the C helper's theta: f = network(c, theta, x), the loss 1/(2B) sum |f - y|^2,
    its gradient and J v; their relative errors against the helper's f, loss, grad and jv, and the
    gradient: (e_f, e_loss, e_grad, e_jv, grad, loss)."""
    import torch
    theta = c["theta"].clone().requires_grad_(True)
    f = network(c, theta, x)
    loss = ((f - c["y"].view(c["B"], -1)) ** 2).sum() / (2 * c["B"])
    loss.backward()
    _, jv = torch.autograd.functional.jvp(lambda th: network(c, th, x), (c["theta"],), (c["v"],))
    e_l = abs(float(loss) - float(c["loss"][0])) / abs(float(loss))
    return rel_err(f, c["f"]), e_l, rel_err(theta.grad, c["grad"]), rel_err(jv, c["jv"]), theta.grad, float(loss)
