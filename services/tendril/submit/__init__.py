"""Submit one job to the network and get its results back (`tendril jobs submit`, SubmitService).

Layout: ``jobfile`` (job.toml), ``offers`` (choosing among offers), ``core`` (the submission:
allocate, lease, dispatch, follow, fetch, retry; no gRPC), ``download`` (results into a local
folder, checked and atomic; no gRPC), ``ports`` (what the core needs from the network),
``network`` (those ports over gRPC, on the reference scheduler's allocation machinery:
``tendril.scheduler.allocation``, ``.leasekeeper``, ``.jobhandle``), ``servicer`` (the thin
AllocationService and SubmitService), ``service`` (the process: `tendril jobs serve` and the
in-process server of `tendril jobs submit`), ``cli``.
"""
