/* src/core/arccos.h, the arc-cosine evaluation under the relu kernels (fc NTK and CNTK):
 *   - arccos_fast against glibc's acos (itself within 1 ulp) on uniform points of [-1, 1] and on
 *     points clustered at +-1 (1 - 10^-k) and at the branch points +-1/2: within 2.5 ulp;
 *   - relu_arccos1 against the closed forms written here with atan2 (theta = atan2(sqrt((1 - r)(1 + r)), r),
 *     E = sd (sin theta + (pi - theta) cos theta) / 2 pi, Ed = (pi - theta) / 2 pi): 1e-14 relative,
 *     plus clamping beyond +-1 and zero at a zero variance; sqrt_and_inverse at q = 0.
 * With an argument FILE it writes every point and arccos_fast's value as hex floats for
 * tests/arccos_check.py, which checks them against mpmath (the accuracy stated in arccos.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "arccos.h"
#include "testutil.h"

#define NPTS 40000

static double ulps(double got, double ref) { return fabs(got - ref) / (nextafter(fabs(ref), INFINITY) - fabs(ref)); }

int main(int argc, char **argv)
{
  static double r[NPTS];
  int n = 0;
  unsigned long long u = 88172645463325252ull; /* xorshift64 */
  for (int i = 0; i < 20000; i++) {
    u ^= u << 13, u ^= u >> 7, u ^= u << 17;
    r[n++] = 2.0 * (double)(u >> 11) / 9007199254740992.0 - 1.0;
  }
  for (int k = 0; k < 16; k++)
    for (int i = 1; i <= 250; i++) { /* 1 - t 10^-k, t in (0, 1], both signs */
      const double t = i / 250.0 * pow(10.0, -k);
      r[n++] = 1 - t, r[n++] = -(1 - t);
    }
  for (int i = -3000; i < 3000; i += 3) r[n++] = 0.5 + i * 1e-7, r[n++] = -0.5 + i * 1e-7;
  const double special[] = {-1, -0.5, 0, 0.5, 1, nextafter(0.5, 0), nextafter(-0.5, 0), nextafter(1, 0), nextafter(-1, 0), 1e-300, -1e-300};
  for (int i = 0; i < (int)(sizeof special / sizeof *special); i++) r[n++] = special[i];

  double worst = 0, at = 0;
  int finite = 1;
  for (int i = 0; i < n; i++) {
    const double g = arccos_fast(r[i]), e = ulps(g, acos(r[i]));
    finite &= isfinite(g);
    if (e > worst) worst = e, at = r[i];
  }
  printf("arccos_fast vs glibc acos over %d points: max %.2f ulp at %.17g\n", n, worst, at);
  CHECK(finite && worst <= 2.5, "arccos_fast within 2.5 ulp of acos (max %.2f at %.17g)", worst, at);
  CHECK(arccos_fast(1.0) == 0.0 && arccos_fast(-1.0) == M_PI && arccos_fast(0.0) == M_PI_2, "arccos_fast at -1, 0, 1");

  double we = 0, wd = 0;
  for (int i = 0; i < n; i++) {
    const double sd = 0.3 + (i % 7), th = atan2(sqrt(fmax((1 - r[i]) * (1 + r[i]), 0)), r[i]);
    const double ee = sd * (sin(th) + (M_PI - th) * cos(th)) / (2 * M_PI), de = (M_PI - th) / (2 * M_PI);
    double e, d;
    relu_arccos1(&e, &d, sd, r[i]);
    /* absolute against the kernel's scale sd (E -> 0 at r = -1, where only the scale is meaningful) */
    we = fmax(we, fabs(e - ee) / sd), wd = fmax(wd, fabs(d - de));
  }
  printf("relu_arccos1 vs atan2 closed forms: E %.2e (of sd), Ed %.2e\n", we, wd);
  CHECK(we < 1e-14 && wd < 1e-14, "relu_arccos1 vs closed forms: %.2e %.2e", we, wd);
  double e, d;
  relu_arccos1(&e, &d, 2.0, 1.0 + 1e-12);
  CHECK(e == 2.0 / 2 && d == 0.5, "clamped above 1: %.17g %.17g", e, d);
  relu_arccos1(&e, &d, 2.0, -1.0 - 1e-12);
  CHECK(fabs(e) < 1e-16 && d == 0.0, "clamped below -1: %.17g %.17g", e, d);
  relu_arccos1(&e, &d, 0.0, NAN);
  CHECK(e == 0.0 && d == 0.0, "zero variance: %g %g", e, d);
  const double q[3] = {0.0, 4.0, 0.25};
  double sq[3], iq[3];
  sqrt_and_inverse(sq, iq, q, 3);
  CHECK(sq[0] == 0 && iq[0] == 0 && sq[1] == 2 && iq[1] == 0.5 && sq[2] == 0.5 && iq[2] == 2, "sqrt_and_inverse");

  if (argc > 1) {
    FILE *f = fopen(argv[1], "w");
    if (!f) return fprintf(stderr, "cannot write %s\n", argv[1]), 1;
    for (int i = 0; i < n; i++) fprintf(f, "%a %a\n", r[i], arccos_fast(r[i]));
    fclose(f);
  }
  return tu_report("test_arccos");
}
