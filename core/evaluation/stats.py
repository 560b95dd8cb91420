"""How sure a number is: 95% intervals for rates and means, and a paired test for two checkpoints.

- A rate (a share of rows, e.g. valid PlantUML) gets the Wilson score interval: it stays inside
  [0, 1] and is honest for small n and for rates near 0 or 1.
- A mean of per-row scores in [0, 1] (e.g. entity F1) gets the same Wilson interval, taken as the
  share mean x n of n. A score in [0, 1] varies at most as much as a yes/no value with the same
  mean (variance <= mean x (1 - mean)), so the interval is conservative, and unlike a bootstrap it
  does not shrink to a point when every row scored the same (a base model scoring 0 everywhere).
- Two checkpoints on the same prompts are compared with the exact two-sided sign test on the
  per-prompt differences (ties dropped): a delta is "better" or "worse" only when p < ALPHA,
  otherwise "within noise".

The interval means: if the evaluation were repeated on another sample of rows drawn the same way,
the true value would fall inside it 95 times in 100.
"""

import math

Z95 = 1.959963984540054
ALPHA = 0.05


def wilson(successes: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a share successes / n (n >= 1; successes may be a sum of scores)."""
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return (0.0 if p == 0 else centre - half), (1.0 if p == 1 else centre + half)


def estimate(values: list) -> dict:
    """{"value", "n", "low", "high"}: the mean of the measured values (true/false or scores in
    [0, 1]; None skipped) and its 95% Wilson interval; value/low/high None when n is 0."""
    measured = [float(v) for v in values if v is not None]
    n = len(measured)
    if not n:
        return {"value": None, "n": 0, "low": None, "high": None}
    low, high = wilson(sum(measured), n)
    return {"value": sum(measured) / n, "n": n, "low": low, "high": high}


def sign_test(first: list, second: list, higher_is_better: bool = True) -> dict:
    """Paired comparison of two checkpoints' per-prompt values (same prompts, same order; pairs with
    a None skipped). {"delta": mean(second - first), "n": pairs, "wins", "losses", "p", "verdict"};
    verdict is "better" / "worse" (for the second checkpoint) or "within noise"."""
    pairs = [(float(a), float(b)) for a, b in zip(first, second) if a is not None and b is not None]
    if not pairs:
        return {"delta": None, "n": 0, "wins": 0, "losses": 0, "p": None, "verdict": "not measured"}
    diffs = [(b - a) * (1 if higher_is_better else -1) for a, b in pairs]
    wins, losses = sum(d > 1e-12 for d in diffs), sum(d < -1e-12 for d in diffs)
    m = wins + losses
    p = min(1.0, 2 * sum(math.comb(m, i) for i in range(min(wins, losses) + 1)) / 2**m) if m else 1.0
    verdict = "within noise" if p >= ALPHA else "better" if wins > losses else "worse"
    return {
        "delta": sum(b - a for a, b in pairs) / len(pairs),
        "n": len(pairs),
        "wins": wins,
        "losses": losses,
        "p": p,
        "verdict": verdict,
    }


def needed_rows(half_width: float, spread: float = 0.5) -> int:
    """Rows for a 95% interval of at most ±half_width on a mean whose per-row standard deviation is
    `spread` (0.5: the worst case of a rate)."""
    return math.ceil((Z95 * spread / half_width) ** 2)
