"""Flaky-aware bisect: a pure Bayesian search for the first bad commit.

Commits are indexed 0..n-1 in history order; 0 is known good, n-1 known bad, and the
culprit (first bad commit) is one of 1..n-1. A run at or after the culprit fails with
probability p, a run before it with false-alarm probability f; both are unknown and
integrated out on a grid. The posterior over (culprit, p, f) depends on the data only
through failures and runs per commit, so it is recomputed exactly from those counts.

The search is a state machine: ask `next_step()`, run the scenario, report each run with
`observe()`, and repeat until `done`. It does no I/O; `to_json`/`from_json` let a caller
resume after an interruption. docs/bisect.md explains the model and the choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rig.errors import UsageError, quote

SCHEMA_VERSION = 1
_TINY = 1e-300  # stands in for 0 inside logarithms, so 0 * log(0) stays 0, not nan


class BisectError(UsageError):
    """Bad input to the bisect search (index out of range, a bad parameter, a bad state)."""


@dataclass(frozen=True)
class Observation:
    """One scenario run at commit `index`."""

    index: int
    failed: bool


@dataclass(frozen=True)
class Step:
    """Run commit `index` up to `runs` times in a row; stop the batch early at a failure."""

    index: int
    runs: int


@dataclass(frozen=True)
class Priors:
    """Grids and prior weights for the reproduction probability p and false-alarm rate f.

    p: log-uniform (equal weights on a geometric grid), so a rare reproduction is as
    plausible a priori as a frequent one. f: a few values near 0, half the mass on 0.
    """

    p_low: float = 0.02
    p_high: float = 0.98
    p_points: int = 48
    f_values: tuple[float, ...] = (0.0, 0.002, 0.005, 0.01, 0.02, 0.04)
    f_weights: tuple[float, ...] = (0.5, 0.15, 0.12, 0.1, 0.08, 0.05)

    def __post_init__(self) -> None:
        if not 0.0 < self.p_low < self.p_high < 1.0:
            raise BisectError(
                f"priors: need 0 < p_low < p_high < 1, got {self.p_low}, {self.p_high}")
        if self.p_points < 2:
            raise BisectError(f"priors: p_points must be >= 2, got {self.p_points}")
        if len(self.f_values) != len(self.f_weights) or not self.f_values:
            raise BisectError("priors: f_values and f_weights must be non-empty, equal length")
        if any(not 0.0 <= f < self.p_high for f in self.f_values):
            raise BisectError(f"priors: every f value must be in [0, p_high={self.p_high})")
        if any(w <= 0 for w in self.f_weights):
            raise BisectError("priors: f_weights must be positive")

    def p_grid(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.geomspace(self.p_low, self.p_high, self.p_points)
        return values, np.full(self.p_points, 1.0 / self.p_points)

    def f_grid(self) -> tuple[np.ndarray, np.ndarray]:
        weights = np.asarray(self.f_weights, dtype=float)
        return np.asarray(self.f_values, dtype=float), weights / weights.sum()

    def to_json(self) -> dict[str, Any]:
        return {"p_low": self.p_low, "p_high": self.p_high, "p_points": self.p_points,
                "f_values": list(self.f_values), "f_weights": list(self.f_weights)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Priors:
        return cls(p_low=float(d["p_low"]), p_high=float(d["p_high"]),
                   p_points=int(d["p_points"]), f_values=tuple(map(float, d["f_values"])),
                   f_weights=tuple(map(float, d["f_weights"])))


@dataclass(frozen=True)
class _Grid:
    """Log-probabilities of the grids, computed once per search."""

    p: np.ndarray
    log_wp: np.ndarray
    log_p: np.ndarray
    log_1mp: np.ndarray
    f: np.ndarray
    log_wf: np.ndarray
    log_f: np.ndarray
    log_1mf: np.ndarray

    @classmethod
    def of(cls, priors: Priors) -> _Grid:
        p, wp = priors.p_grid()
        f, wf = priors.f_grid()
        return cls(p=p, log_wp=np.log(wp), log_p=np.log(p), log_1mp=np.log1p(-p),
                   f=f, log_wf=np.log(wf), log_f=np.log(np.maximum(f, _TINY)),
                   log_1mf=np.log1p(-f))


@dataclass(frozen=True)
class _Posterior:
    """Culprit posterior and, per culprit, the posterior means of p and f."""

    culprit: np.ndarray  # P(culprit = c), c = 0..n-1 (0 has probability 0)
    mean_p: np.ndarray  # E[p | culprit = c, data]
    mean_f: np.ndarray  # E[f | culprit = c, data]
    p_given: np.ndarray  # P(p = grid[g] | culprit = c, data), n x grid


def _logsumexp_rows(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1)
    return top + np.log(np.exp(x - top[:, None]).sum(axis=1))


def _posterior(grid: _Grid, fails: np.ndarray, runs: np.ndarray,
               log_prior: np.ndarray) -> _Posterior:
    """Exact grid posterior from failures and runs per commit."""
    passes = runs - fails
    # suffix sums: data at commits >= c (bad if c is the culprit); prefix: data before c
    fails_from = np.cumsum(fails[::-1])[::-1].astype(float)
    passes_from = np.cumsum(passes[::-1])[::-1].astype(float)
    fails_before = fails.sum() - fails_from
    passes_before = passes.sum() - passes_from

    log_a = (grid.log_wp + fails_from[:, None] * grid.log_p
             + passes_from[:, None] * grid.log_1mp)
    log_b = (grid.log_wf + fails_before[:, None] * grid.log_f
             + passes_before[:, None] * grid.log_1mf)
    evidence_a = _logsumexp_rows(log_a)
    evidence_b = _logsumexp_rows(log_b)

    log_post = log_prior + evidence_a + evidence_b
    culprit = np.exp(log_post - log_post.max())
    culprit /= culprit.sum()
    p_given = np.exp(log_a - evidence_a[:, None])
    mean_p = p_given @ grid.p
    mean_f = np.exp(log_b - evidence_b[:, None]) @ grid.f
    return _Posterior(culprit=culprit, mean_p=mean_p, mean_f=mean_f, p_given=p_given)


def _xlogx(x: np.ndarray) -> np.ndarray:
    return x * np.log(np.maximum(x, _TINY))


def _block_matrix(n: int, skipped: frozenset[int]) -> np.ndarray:
    """One-hot map commit -> range of commits no run can tell apart.

    A skipped commit is indistinguishable from the next probed commit after it (both are
    bad exactly when every probed commit from there on is bad), so each probed commit
    heads a range made of itself and the skipped commits just before it. Trailing skipped
    commits form a last range of their own. Commit 0 is never the culprit; it sits alone.
    """
    block_of = np.zeros(n, dtype=int)
    block = 0
    for c in range(1, n):
        block_of[c] = block + 1
        if c not in skipped:
            block += 1
    n_blocks = int(block_of.max()) + 1
    matrix = np.zeros((n, n_blocks))
    matrix[np.arange(n), block_of] = 1.0
    return matrix


def _expected_entropy(post: _Posterior, candidates: np.ndarray,
                      blocks: np.ndarray) -> np.ndarray:
    """Expected entropy (nats) of the culprit-range posterior after one run at each candidate."""
    n = post.culprit.size
    at_or_after = np.arange(n)[None, :] <= candidates[:, None]  # culprit c <= run commit j
    fail_prob = np.where(at_or_after, post.mean_p[None, :], post.mean_f[None, :])
    w_fail = (post.culprit[None, :] * fail_prob) @ blocks
    w_pass = (post.culprit[None, :] * (1.0 - fail_prob)) @ blocks
    # sum over outcomes o of P(o) * H(posterior | o), from unnormalised weights
    return (_xlogx(w_fail.sum(axis=1)) + _xlogx(w_pass.sum(axis=1))
            - _xlogx(w_fail).sum(axis=1) - _xlogx(w_pass).sum(axis=1))


def _expected_p_entropy(post: _Posterior, p: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Expected conditional entropy H(p | culprit) after one run at each candidate.

    With w[c, g] the joint weight of an outcome, E[H(C, P)] - E[H(C)] needs, per candidate
    j, sums of xlogx over culprits c <= j (bad: the run's fail chance is p_g) and c > j
    (good: the run's fail chance is E[f | c]); prefix sums make that O(n * grid).
    """
    joint = post.culprit[:, None] * post.p_given
    per_outcome = []
    for bad, good in ((joint * p, (post.culprit * post.mean_f)[:, None] * post.p_given),
                      (joint * (1.0 - p), (post.culprit * (1.0 - post.mean_f))[:, None]
                       * post.p_given)):
        bad_c, good_c = bad.sum(axis=1), good.sum(axis=1)
        cell = _prefix_split(_xlogx(bad).sum(axis=1), _xlogx(good).sum(axis=1), candidates)
        marginal = _prefix_split(_xlogx(bad_c), _xlogx(good_c), candidates)
        per_outcome.append(marginal - cell)
    return per_outcome[0] + per_outcome[1]


def _prefix_split(at_or_before: np.ndarray, after: np.ndarray,
                  candidates: np.ndarray) -> np.ndarray:
    """sum_{c <= j} at_or_before[c] + sum_{c > j} after[c], for each candidate j."""
    head = np.cumsum(at_or_before)
    tail = after.sum() - np.cumsum(after)
    return head[candidates] + tail[candidates]


def _entropy(probs: np.ndarray) -> float:
    return float(-_xlogx(probs).sum())


@dataclass
class BisectSearch:
    """The search state: counts per commit plus fixed settings; see the module docstring."""

    n: int
    confidence: float = 0.99
    max_runs: int | None = None
    skipped: frozenset[int] = frozenset()
    priors: Priors = field(default_factory=Priors)
    max_batch: int = 4
    batch_tolerance: float = 0.1
    p_info_weight: float = 0.3
    _fails: np.ndarray = field(init=False, repr=False)
    _runs: np.ndarray = field(init=False, repr=False)
    _grid: _Grid = field(init=False, repr=False)
    _blocks: np.ndarray = field(init=False, repr=False)
    _log_prior: np.ndarray = field(init=False, repr=False)
    _cache: _Posterior | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.n < 2:
            raise BisectError(f"need at least 2 commits (a good and a bad end), got n={self.n}")
        if not 0.0 < self.confidence < 1.0:
            raise BisectError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.max_runs is not None and self.max_runs < 1:
            raise BisectError(f"max_runs must be >= 1, got {self.max_runs}")
        if self.max_batch < 1:
            raise BisectError(f"max_batch must be >= 1, got {self.max_batch}")
        if not 0.0 <= self.batch_tolerance < 1.0:
            raise BisectError(f"batch_tolerance must be in [0, 1), got {self.batch_tolerance}")
        if not self.p_info_weight >= 0.0:
            raise BisectError(f"p_info_weight must be >= 0, got {self.p_info_weight}")
        self.skipped = frozenset(self.skipped)
        for index in self.skipped:
            self._check_index(index)
        self._fails = np.zeros(self.n, dtype=np.int64)
        self._runs = np.zeros(self.n, dtype=np.int64)
        self._grid = _Grid.of(self.priors)
        self._blocks = _block_matrix(self.n, self.skipped)
        log_prior = np.full(self.n, -np.log(self.n - 1))
        log_prior[0] = -np.inf  # the known-good end is never the culprit
        self._log_prior = log_prior

    # --- input -----------------------------------------------------------------------

    def observe(self, index: int, failed: bool) -> None:
        """Record one scenario run at commit `index`."""
        self._check_index(index)
        self._runs[index] += 1
        self._fails[index] += int(bool(failed))
        self._cache = None

    def skip(self, index: int) -> None:
        """Commit `index` cannot be built or started: never probe it again."""
        self._check_index(index)
        self.skipped = self.skipped | {index}
        self._blocks = _block_matrix(self.n, self.skipped)

    # --- decisions -------------------------------------------------------------------

    def next_step(self) -> Step | None:
        """Which commit to run next and how many times in a row; None once done."""
        if self.done:
            return None
        index = self._best_candidate()
        return Step(index=index, runs=self._batch_size(index))

    @property
    def done(self) -> bool:
        return self.reason is not None

    @property
    def reason(self) -> str | None:
        """Why the search is over: "confident" (a range holds `confidence`), "budget"
        (max_runs spent), or None while it goes on."""
        if self.best_range()[2] >= self.confidence:
            return "confident"
        if self.max_runs is not None and self.total_runs >= self.max_runs:
            return "budget"
        return None

    # --- results ---------------------------------------------------------------------

    def posterior(self) -> np.ndarray:
        """P(culprit = i) for i = 0..n-1; sums to 1 (index 0 always 0)."""
        return self._post().culprit.copy()

    def best(self) -> tuple[int, float]:
        """The most likely culprit and its probability."""
        culprit = self._post().culprit
        index = int(np.argmax(culprit))
        return index, float(culprit[index])

    def best_range(self) -> tuple[int, int, float]:
        """The most likely range of indistinguishable commits (lo, hi inclusive) and its
        probability; lo == hi unless skipped commits sit just before hi."""
        mass = self._post().culprit @ self._blocks
        block = int(np.argmax(mass))
        members = np.flatnonzero(self._blocks[:, block])
        return int(members[0]), int(members[-1]), float(mass[block])

    def p_estimate(self) -> float:
        """Posterior mean of the reproduction probability p."""
        post = self._post()
        return float(post.culprit @ post.mean_p)

    def false_alarm_estimate(self) -> float:
        """Posterior mean of the false-alarm probability f."""
        post = self._post()
        return float(post.culprit @ post.mean_f)

    @property
    def total_runs(self) -> int:
        return int(self._runs.sum())

    def counts(self) -> tuple[tuple[int, int], ...]:
        """(failures, runs) per commit."""
        return tuple((int(f), int(r)) for f, r in zip(self._fails, self._runs, strict=True))

    # --- persistence -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "n": self.n, "confidence": self.confidence,
                "max_runs": self.max_runs, "skipped": sorted(self.skipped),
                "priors": self.priors.to_json(), "max_batch": self.max_batch,
                "batch_tolerance": self.batch_tolerance, "p_info_weight": self.p_info_weight,
                "fails": self._fails.tolist(), "runs": self._runs.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BisectSearch:
        if d.get("schema_version") != SCHEMA_VERSION:
            raise BisectError(f"bisect state: schema_version {quote(d.get('schema_version'))} "
                              f"is not {SCHEMA_VERSION}")
        try:
            search = cls(n=int(d["n"]), confidence=float(d["confidence"]),
                         max_runs=None if d["max_runs"] is None else int(d["max_runs"]),
                         skipped=frozenset(int(i) for i in d["skipped"]),
                         priors=Priors.from_json(d["priors"]), max_batch=int(d["max_batch"]),
                         batch_tolerance=float(d["batch_tolerance"]),
                         p_info_weight=float(d["p_info_weight"]))
            fails = np.asarray(d["fails"], dtype=np.int64)
            runs = np.asarray(d["runs"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise BisectError(f"bisect state: missing or bad field: {exc}") from None
        if fails.shape != (search.n,) or runs.shape != (search.n,) or np.any(fails < 0) \
                or np.any(fails > runs):
            raise BisectError("bisect state: fails/runs must be n counts with 0 <= fails <= runs")
        search._fails, search._runs = fails, runs
        return search

    # --- internals -------------------------------------------------------------------

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.n:
            raise BisectError(f"commit index {index} out of range 0..{self.n - 1}")

    def _post(self) -> _Posterior:
        if self._cache is None:
            self._cache = _posterior(self._grid, self._fails, self._runs, self._log_prior)
        return self._cache

    def _candidates(self) -> np.ndarray:
        return np.array([i for i in range(self.n) if i not in self.skipped], dtype=int)

    def _gains(self, post: _Posterior) -> tuple[np.ndarray, np.ndarray]:
        """Candidates and the expected information gain (nats) of one run at each."""
        candidates = self._candidates()
        now = _entropy(post.culprit @ self._blocks)
        gains = now - _expected_entropy(post, candidates, self._blocks)
        if self.p_info_weight:
            now_p = _entropy(post.culprit[:, None] * post.p_given) - _entropy(post.culprit)
            gains += self.p_info_weight * (now_p - _expected_p_entropy(post, self._grid.p,
                                                                     candidates))
        return candidates, gains

    def _best_candidate(self) -> int:
        post = self._post()
        candidates, gains = self._gains(post)
        # among (near-)ties take the one nearest the posterior median, for symmetric histories
        best = np.flatnonzero(gains >= gains.max() - 1e-12)
        median = int(np.searchsorted(np.cumsum(post.culprit), 0.5))
        return int(candidates[best[np.argmin(np.abs(candidates[best] - median))]])

    def _batch_size(self, index: int) -> int:
        """Runs at `index` while, should they all pass, it stays (nearly) the best commit.

        Passes are the outcome that repeats: one failure says much when f is small, a
        pass says little. A caller stops the batch at the first failure.
        """
        size = 1
        runs = self._runs.copy()
        budget = None if self.max_runs is None else self.max_runs - self.total_runs
        while size < self.max_batch and (budget is None or size < budget):
            runs[index] += 1
            post = _posterior(self._grid, self._fails, runs, self._log_prior)
            if (post.culprit @ self._blocks).max() >= self.confidence:
                break
            candidates, gains = self._gains(post)
            if gains[candidates == index][0] < (1.0 - self.batch_tolerance) * gains.max():
                break
            size += 1
        return size
