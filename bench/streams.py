"""Parallel streams across a shaped link of the lab (docs/WAN.md "Parallel streams").

A lab of two workers' hosts at 1 Gbit/s with 20 ms added each way (40 ms more round trip),
plaintext, the relay's window 1 MiB per connection and direction (one connection carries at
most 1 MiB / 20 ms ≈ 420 Mbit/s, as a TCP connection whose window is 2 MiB does over a 40 ms
round trip; with the relay's default window one connection is not window-bound at all, see
docs/WAN.md "Parallel streams"): a parameter server alone on one host, a client on the other pushing a 64 MB
pseudo-gradient and pulling θ of the same size, first over one connection, then with the
count the bridge's rule chooses (``tendril.lab.streams``). Skipped, with the reason, where
network namespaces cannot be made (not root, no ``ip``/``tc``/``iptables``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.common import Figure

RATE_MBIT = 1000.0
LATENCY_MS = 20.0  # one way: the round trip grows by 40 ms
PAYLOAD_MB = 64.0
WINDOW_KIB = 1024


def _name(what: str) -> str:
    return f"parallel streams {what} {PAYLOAD_MB:g} MB 1 Gbit/s {2 * LATENCY_MS:g} ms, 2 MiB window"


async def _run(work: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from tendril.lab.lab import Lab, LabSettings
    from tendril.lab.streams import measure_streams

    settings = LabSettings(
        workers=2, rate_mbit=RATE_MBIT, latency_ms=LATENCY_MS, tls=False, relay_window_kib=WINDOW_KIB
    )
    with Lab(work / "lab-streams", settings) as lab:
        link = await lab.measure("worker-1", "worker-0")
        rows = await measure_streams(lab, mb=PAYLOAD_MB, counts=(1,), auto=True)
    return link, rows


def measure(work: Path) -> list[Figure]:
    from tendril.lab.net import namespaces_unavailable

    why = namespaces_unavailable()
    if why:
        return [Figure.not_measured(_name(w), f"no network namespaces here ({why})") for w in ("push", "pull")]
    link, rows = asyncio.run(_run(work))
    one = next(r for r in rows if r["mode"] == "fixed")
    chosen = next(r for r in rows if r["mode"] == "chosen")
    probe = ", ".join(f"{r['streams']}/{r.get('pull_streams', r['streams'])}" for r in rows if r["mode"] == "auto")
    context = (
        f"link {link['mbit_per_s']} Mbit/s raw TCP, round trip {link['rtt_ms']} ms; "
        f"probe (push/pull connections per round) {probe}; settled {chosen.get('settled')}"
    )
    figures = []
    for what, streams in (("push", chosen["streams"]), ("pull", chosen.get("pull_streams", chosen["streams"]))):
        value, base = chosen[f"{what}_s"], one[f"{what}_s"]
        figures.append(
            Figure(
                _name(what),
                value,
                "s",
                baseline=base,
                baseline_name="one connection",
                target="≤ 0.8× baseline",
                ok=value <= base * 0.8,
                note=(
                    f"{streams} connection(s) chosen, {chosen[f'{what}_mbit']} Mbit/s "
                    f"vs {one[f'{what}_mbit']}; {context}"
                ),
                details={"rows": rows, "link": link},
            )
        )
    return figures
