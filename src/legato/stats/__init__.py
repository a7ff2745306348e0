"""Pure statistics of time-to-failure studies: the failure table, survival estimates,
scaling fits and hierarchical (model × instance) inference.

Nothing here trains a model, runs MD or calls the command line; every function takes
numbers or tables and returns numbers (workflows live in :mod:`legato.workflows`).
"""
