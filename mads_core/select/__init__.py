"""Choosing core sets: the MADS coverage greedy, its bit kernels, and text baselines."""
