"""The reference DiLoCo trainer: an executor JobService starts for jobs of class train/diloco.

``python -m tendril_diloco --socket {SOCKET_PATH} [--mixed-precision no|fp16|bf16]``.
It talks only to its job bridge (env ``TENDRIL_BRIDGE_TOKEN``): publishes θ0, fetches the run's
current θ, trains H inner AdamW steps on slices from ``NextSlice`` while reporting every batch,
sends Δ = θ_round_start − θ_local at the scheduler's sync point and applies the outer update.
Modules: ``config`` (job config), ``params`` (θ snapshots, Δ, updates), ``model``, ``data``
(batches across slices), ``logs`` (JSON-lines events), ``trainer`` (the loop). The bridge
client is the SDK's (:class:`tendril_sdk.BridgeClient`).
"""
