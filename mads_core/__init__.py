"""MADS Explorer core: activation fingerprints and coverage-based data selection.

Data flow (each arrow a plain call): ``data`` -> ``fingerprint`` (model from
``models``, cached by ``store``) -> ``select`` / ``baselines`` -> ``metrics`` /
``project`` -> ``plots``. Nothing in this package imports Streamlit.
"""

__version__ = "0.1.0"
