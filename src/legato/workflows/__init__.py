"""Workflows that drive training and MD and write results: time-to-failure ensembles, the
robustness study, the ρ search, scaling reports and their plots.

Statistics they use live in :mod:`legato.stats`; the command line (:mod:`legato.cli`) is a
thin layer over these functions, and nothing here imports the command line.
"""
