"""The one JSON coercion of ScaleScope: numpy arrays and scalars, tuples, dataclasses with
``to_dict`` → plain JSON values. Strict JSON has no NaN or infinity: non-finite floats become null.

Used by fit results (core/fitting), IsoFLOP results, the store (db/fits.py) and the CLI's --json.
"""
from __future__ import annotations

import math

import numpy as np


def jsonable(obj):
    """``obj`` with every numpy value, tuple and ``to_dict()`` object made plain JSON (NaN/inf → None)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return jsonable(obj.to_dict())
    return obj
