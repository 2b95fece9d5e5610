"""Capacity planning: the search space, priced lower bounds, branch-and-bound search and its answer."""
