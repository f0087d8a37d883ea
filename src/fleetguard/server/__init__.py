"""The running process: the operator app's assembly (``operator_app``), serving with TLS and
connection limits (``serve``, ``connections``), background jobs and schedules
(``scan_jobs``), and orchestration that spans domains (``decommission``).

Nothing is imported here, so that a command's ``--help`` loads none of it.
"""
