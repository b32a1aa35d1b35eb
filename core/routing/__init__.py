"""MoE routing analysis: capture router decisions from a local checkpoint and measure them.

- ``families``: where each transformers 5.x MoE family keeps its routers and experts.
- ``capture``: load a checkpoint offline and stream (layer, doc, position, token, rank, expert,
  weight) rows to a sink; read traces produced elsewhere.
- ``metrics``: load balance, specialization, co-activation, saturation (pure numpy).
- ``similarity``: expert weight, router-row and output similarity.

Import the submodules directly (``from core.routing import capture``); this package imports no
torch at import time so ``core.routing.metrics`` stays light.
"""
