"""``make bench`` / ``python -m bench``: Tendril's data-plane figures, each beside its baseline.

Writes ``bench-out/results.json`` and prints a table. Every figure is measured in the same
run as its baseline, on this machine; nothing is copied from elsewhere. Modules: ``stream``
(tensor stream vs raw socket), ``paramserver`` (ParameterServer peak RSS under 8 pushers),
``codecs`` (bytes and error of bf16/int8 vs fp32), ``sync`` (a DiLoCo round sync through a
ParameterServer vs gloo all_reduce + local outer Nesterov, 3 processes), ``external``
(figures other parts provide: ``bridge_progress``, the job bridge ReportProgress round trip
through three processes ``progress_scheduler``/``progress_bridge``/``progress_client``;
``demo_stats``).
"""
