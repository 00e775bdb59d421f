"""Domain types and roofline physics for rackplan.

Pure: no solver, no file or network I/O. Everything here is a function of the
numbers passed in, so every rate the planner uses can be recomputed by hand.
"""
