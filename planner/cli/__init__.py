"""The command line: every ``rackplan`` planning command (``main``) and the uncertainty
commands (``uncertainty``); ``rackplan.api.cli`` adds ``serve`` and ``keys``."""
