"""Fewer Newton steps for a grid of starts: merge starts that have met, stop those that cannot win.

A multi-start search runs every start to its own minimum, and most of that work is repeated: on
Epoch AI's Chinchilla data 4,316 of the 4,500 grid starts end in one basin, many of them after
crawling along the same valley. ``StartTriage`` is the ``retire`` hook of ``batched_newton``
(core/fitting/solver.py) that removes this repetition, asked once per iteration:

- merge: the solver's path depends only on where a start is, so a start that lands in a cell of
  θ-space (width ``merge_cell`` in the caller's scaled coordinates) that another start has already
  visited would follow it from there; it stops and takes that start's end point (``root``);
- prune: once some start has converged (the incumbent, f_inc), a start still above f_inc whose
  decrease over its last ``patience`` steps, kept up for ``horizon`` more steps, would not bring
  it to f_inc is stopped. This is a progress test, not a bound: a start that suddenly speeds up
  after a plateau could be lost. It is used where it is safe in practice: the grid's best basin is
  found by thousands of starts, and tests/test_fit.py checks that the triaged search returns the
  full search's optimum (Chinchilla data and synthetic laws).

Merged starts count as reaching their root's minimum; pruned ones count as not converged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


@dataclass(frozen=True)
class TriageOptions:
    """How ``StartTriage`` decides; the defaults were measured on the 4,500-start Chinchilla search."""

    merge: bool = True  # merge starts whose paths meet (one start goes on): ~30% fewer steps alone
    merge_cell: float = 1e-3  # cell width in scaled θ (log-terms at the data's centre, exponents × log range):
    #                           on the recorded Chinchilla paths 1e-2 saved ~12% more steps but sent 7 of 4,500
    #                           starts to another basin than their own path reached; 1e-3 sent none
    prune: bool = True  # stop starts that cannot beat the incumbent at their recent pace: ~2× fewer steps
    patience: int = 5  # the pace is the objective's decrease over this many steps (Chinchilla search: 10 → 1.0 s,
    #                    5 → 0.82 s CPU, same optimum; tests/test_fit.py checks it on synthetic laws too)
    horizon: int = 50  # ... kept up for this many more steps must reach the incumbent, else the start stops
    #                    (100 → 0.78 s, 50 → 0.71 s CPU on the Chinchilla search; both returned the full search's
    #                    optimum there and on 12 random synthetic laws)
    margin: float = 1e-6  # a start within this relative distance of the incumbent is never stopped: it may be its twin


class StartTriage:
    """The ``retire`` hook of ``batched_newton`` (see the module docstring) for one batched search.

    ``coords(theta (k, P)) -> (k, P)`` maps parameters to the scaled coordinates the merge cells live in.
    After the search: ``root[s]`` is the start whose end point start s shares (s itself if it ran to
    its end), ``pruned[s]`` says whether s (or its root) was stopped by the progress test.
    """

    def __init__(self, n_starts: int, coords: Callable[[np.ndarray], np.ndarray],
                 options: TriageOptions = TriageOptions()):
        self.options = options
        self.coords = coords
        self.parent = np.arange(n_starts)
        self.pruned = np.zeros(n_starts, dtype=bool)
        self.merged = np.zeros(n_starts, dtype=bool)
        self._cells: dict = {}
        self._history = np.full((options.patience + 1, n_starts), np.nan)  # f over the last patience+1 steps
        self._seen = np.zeros(n_starts, dtype=np.int64)  # steps recorded per start
        self._step = 0

    def _find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    @property
    def root(self) -> np.ndarray:
        return np.array([self._find(s) for s in range(self.parent.size)], dtype=np.int64)

    def __call__(self, active: np.ndarray, theta: np.ndarray, f: np.ndarray, status: np.ndarray) -> np.ndarray:
        o = self.options
        gone = np.zeros(active.size, dtype=bool)
        fa = f[active]
        if o.prune:
            slot = self._step % (o.patience + 1)
            self._history[slot, active] = fa
            self._seen[active] += 1
            done = (status == 0) | (status == 1)
            incumbent = float(f[done].min()) if done.any() else np.inf
            if np.isfinite(incumbent):
                before = self._history[(self._step + 1) % (o.patience + 1), active]  # f patience steps ago
                pace = (before - fa) / o.patience
                ready = self._seen[active] > o.patience
                above = fa > incumbent + o.margin * abs(incumbent)
                gone = ready & above & (fa - o.horizon * pace > incumbent)
                self.pruned[active[gone]] = True
        self._step += 1
        if o.merge:
            pts = self.coords(theta[active])
            ok = (np.abs(pts) < 1e12 * o.merge_cell).all(axis=1)  # finite and not absurdly far
            cells = np.floor(np.where(ok[:, None], pts, 0.0) / o.merge_cell).astype(np.int64)
            # One 64-bit key per cell (a multiply-xor hash over the coordinates; a collision of two
            # of the ~10^6 cells visited has probability ~10^-7).
            key = np.zeros(active.size, dtype=np.uint64)
            for j in range(cells.shape[1]):
                key ^= cells[:, j].astype(np.uint64)
                key *= np.uint64(0x100000001B3)
            cells_seen, merged_now = self._cells, []
            for i, (s, k) in enumerate(zip(active.tolist(), np.where(ok & ~gone, key, 0).tolist())):
                if k == 0:  # pruned just now, or too far off to place (a real key is 0 with probability 2^-64)
                    continue
                owner = cells_seen.setdefault(k, s)
                if owner != s:
                    r = self._find(owner)
                    if r != s:
                        self.parent[s] = r
                        merged_now.append(i)
            if merged_now:
                gone[merged_now] = True
                self.merged[active[merged_now]] = True
        return gone

    def resolve(self) -> tuple[np.ndarray, np.ndarray]:
        """(root (S,), lost (S,)): each start's representative, and whether its end point was given up."""
        root = self.root
        return root, self.pruned[root]


def chinchilla_coords(log_n: np.ndarray, log_d: np.ndarray, tie: Optional[np.ndarray] = None):
    """Scaled coordinates of Approach 3's θ = (a, b, e, α, β) (or (a, b, e, α) with α = β tied):
    the A and B terms' logs at the data's centre, e, and each exponent times its log range, so
    that one cell width means about the same change in the fitted loss in every direction."""
    xc, yc = float(np.mean(log_n)), float(np.mean(log_d))
    xr, yr = float(np.ptp(log_n)) or 1.0, float(np.ptp(log_d)) or 1.0

    def coords(theta):
        th = np.asarray(theta, np.float64)
        if tie is not None:
            th = th @ tie.T
        a, b, e, al, be = (th[:, j] for j in range(5))
        return np.stack([a - al * xc, b - be * yc, e, al * xr, be * yr], axis=1)

    return coords
