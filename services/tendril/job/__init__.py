"""JobService: dispatch, executor processes, per-job work dirs and bridges, job records."""
