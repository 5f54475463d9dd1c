"""The worker supervisor behind `tendril worker run`.

It starts the embedded gateway (when no gateway is configured) and the five worker services,
each in its own OS process, waits until each reports SERVING, restarts crashed ones with
backoff, registers the worker at the gateway, and stops everything on SIGTERM/SIGINT.
"""

from tendril.supervisor.run import run_supervisor

__all__ = ["run_supervisor"]
