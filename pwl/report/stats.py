"""The statistics the reports use, each defined once (scipy is not a dependency: the three functions are short).

- A paired difference over seeds is tested with Student's t on the per-seed differences, n - 1 degrees of
  freedom, two-sided; the p-values of one table are corrected together with Holm's step-down method.
- A single test accuracy (k right of n test images) carries a Wilson score interval at 95%.
"""
import math

ALPHA = 0.05  # family-wise error rate of one table of paired differences (Holm)
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile

# The words the reports use, each with the one meaning it has there (the report prints these once).
WORDS = {
    "significant": f"a paired difference whose Holm-corrected two-sided p-value (Student's t on the per-seed "
                   f"differences, n - 1 degrees of freedom, over every difference of its table) is below {ALPHA:g}; "
                   "never said of a single seed",
    "monotone": "no step along the order lowers test accuracy on the one replica shown (a 0.00 step counts as "
                "monotone); says nothing of whether a step is larger than test-set noise",
    "climbs": "all-T minus all-S along the order is positive and larger than both states' 95% Wilson half-widths "
              "added together",
}


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def paired_t(diffs: list[float]) -> tuple[float, float]:
    """(t, two-sided p) of the mean of per-seed differences against 0; (nan, nan) for fewer than 2 seeds or no
    spread with a zero mean; an exactly constant non-zero difference gives t = inf, p = 0."""
    n = len(diffs)
    if n < 2:
        return math.nan, math.nan
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    if sd == 0.0:
        return (math.nan, math.nan) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(n))
    return t, t_two_sided_p(t, n - 1)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given; nan stays nan and is not counted)."""
    idx = sorted((i for i, p in enumerate(pvalues) if not math.isnan(p)), key=lambda i: pvalues[i])
    m, out, running = len(idx), [math.nan] * len(pvalues), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def wilson(k: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (low, high) of a proportion k / n, as fractions."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return centre - half, centre + half


def wilson_pct(acc_pct: float, n: int) -> tuple[float, float]:
    """Wilson interval in percent of an accuracy given in percent over n test images."""
    lo, hi = wilson(round(acc_pct / 100 * n), n)
    return 100 * lo, 100 * hi


def wilson_half_pct(acc_pct: float, n: int) -> float:
    """Half the Wilson interval's width, in points: the '±' printed beside a single accuracy."""
    lo, hi = wilson_pct(acc_pct, n)
    return (hi - lo) / 2
