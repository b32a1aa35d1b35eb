"""Fitting scaling laws, by concern; each module imports only those above it in this list (and the law
registry, core/registry.py, which imports ``residuals``):

- ``solver``: ``huber``, ``NewtonOptions``, ``batched_newton`` (the batched saddle-free Newton solver)
- ``inputs``: input checks, drop-highest selection, ``weights_by_run``, bootstrap summaries
- ``diagnostics``: residual diagnostics, fit warnings, the declared diagnostics of each method
- ``residuals``: ``FitSpec`` and the log-space residuals of the generically fitted laws
- ``result``: ``FitResult`` with its ``BudgetOptimum`` table (and the stored layout)
- ``chinchilla``: Approach 3 (``Approach3Settings``, ``fit_chinchilla``, ``scipy_reference_fit``)
- ``generic``: ``fit_law`` for every law of core/registry.py
- ``backtest``: fit below a compute threshold, predict above it
"""
