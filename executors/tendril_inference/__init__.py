"""The inference executor: JobService starts it for jobs of class inference / name generate.

``python -m tendril_inference --socket {SOCKET_PATH}``. It talks only to its job bridge (env
``TENDRIL_BRIDGE_TOKEN``): fetches the prompts JSONL, the tokenizer and the model (a transformers
checkpoint by URI, SafeTensors only, loaded by :mod:`tendril_models` as the trainer loads it),
runs batched ``generate`` on the job's GPU (or the CPU), reports every batch and writes
``results/generations.jsonl`` and ``results/summary.json`` in its work dir. Modules: ``config``
(job config), ``prompts`` (the JSONL and batching), ``generate`` (device, dtype, batches of
``model.generate``), ``results`` (atomic result files), ``runner`` (the job). docs/INFERENCE.md
is the user's guide.
"""
