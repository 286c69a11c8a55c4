"""Contract stub — the selection owner replaces this file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Selection:
    """One method's full ranking; any budget is a prefix of ``ranking``."""

    method: str
    n: int
    ranking: np.ndarray      # int64 (K,) row indices, pick order
    gains: np.ndarray        # float64 (K,) objective gain at pick (NaN where a method has none)
    coverage: np.ndarray     # float64 (K,) objective after each pick (NaN where n/a)
    rounds: np.ndarray       # int32 (K,) round of each pick (0 when not applicable)
    settings: dict[str, Any] = field(default_factory=dict)
    settings_hash: str = ""
