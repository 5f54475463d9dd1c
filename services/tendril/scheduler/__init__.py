"""The reference scheduler: one peer that drives one DiLoCo training run across workers.

Layout: grpc-free cores (``jobconfig``, ``slices``, ``planner``, ``run``, ``metrics``) under a
thin servicer (``servicer``: AllocationService + CoordinationService) and the ``driver`` that
talks to the network (bus, leases, jobs, parameter server). ``cli`` adds
``tendril scheduler run --config job.toml``; ``demo`` is ``make demo``.
"""
