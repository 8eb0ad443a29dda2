"""Keeping part of production in an environment: the subset plan (roots, followers, parents
pulled along foreign keys) and the prefilter that stages only the rows a table may keep."""
