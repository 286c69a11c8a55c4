"""Figures: pure functions from plain data to plotly figures (no Streamlit)."""
