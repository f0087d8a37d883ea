"""The running process: the operator app's assembly (``operator_app``), serving with TLS and
connection limits (``serve``, ``listeners``, ``connections``), the work it repeats while it
runs (``background``: CRL upkeep, scan schedules in ``scan_jobs``, CA reloads in
``ca_reload``), and orchestration that spans domains (``decommission``).

Nothing is imported here, so that a command's ``--help`` loads none of it.
"""
