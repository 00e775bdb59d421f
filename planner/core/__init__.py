"""The optimisation core: rate columns, the MIP, solving, plans, the checker, shadow prices,
baselines, what-if and alternatives, and planning under uncertainty."""
