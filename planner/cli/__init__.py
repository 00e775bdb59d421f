"""The command line, and the ``rackplan`` console script (``main.run``): every planning
command (``main``) and the uncertainty commands (``uncertainty``). Packages above the planner
add theirs through the ``rackplan.commands`` entry points (the REST service: ``serve`` and
``keys``, in ``api/commands.py``)."""
