"""The lab's network: one network namespace per host, joined through a Linux bridge in a
namespace of its own, every host link shaped with ``tc ... tbf`` in both directions.

::

    host ns  tlab-<id>-<host>:  lo, eth0 198.18.<k>.<i>/24   (tbf: the host's upload)
                                  │ veth
    bridge ns tlab-<id>-br:     v-<host> (tbf: the host's download) ── br0 ── ctl
                                                                              │ veth (not shaped)
    root ns:                    tlab<id> 198.18.<k>.254/24  (the control link: the lab's own
                                process health-checks and calls the peers through it)

Every name carries the lab's id (``tlab-<id>-`` for namespaces, ``tlab<id>`` for the one link
in the root namespace), so two labs never collide and ``tendril lab clean`` finds leftovers
by name. No namespace has a default route and the root namespace gains only the connected
route of the lab's /24: traffic of the lab goes nowhere else. Who owns a lab is written to
``RUN_DIR/<id>.json`` (its process id), so that ``clean`` leaves the labs of live processes alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tendril.lab.errors import ErrorKind, LabError, LabReason

NETNS_PREFIX = "tlab-"
LINK_PREFIX = "tlab"
RUN_DIR = Path(os.environ.get("TENDRIL_LAB_RUN_DIR", "/run/tendril-lab"))
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
HOST_IFACE = "eth0"
BRIDGE = "br0"
CONTROL_HOST = 254  # the root namespace's address in the lab's /24
# NOTE: tbf's queue limit expressed as time: how long a packet may wait for tokens before it is
# dropped. 50 ms keeps TCP's queue short enough that the measured rate is the shaped one.
TBF_LATENCY_MS = 50
COMMAND_SECONDS = 20.0


def tbf_burst(rate_mbit: float) -> int:
    """tbf's bucket in bytes: 4 ms at the rate, at least 64 KiB.

    NOTE: veths hand tbf GSO packets of up to 64 KiB; a bucket smaller than one such packet
    makes tbf split every one of them, which costs CPU and lowers the rate it reaches.
    """
    return max(64 * 1024, int(rate_mbit * 1e6 / 8 * 0.004))


def run_ip(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one ``ip``/``tc`` command; a failure raises LabError with its stderr."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=COMMAND_SECONDS, check=False)
    if check and proc.returncode != 0:
        raise LabError(
            ErrorKind.INTERNAL,
            f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}",
            reason=LabReason.COMMAND_FAILED,
        )
    return proc


# NOTE: the lab's services listen on fixed ports inside the kernel's ephemeral range
# (32768-60999): an outgoing connection of a host that started first (a worker's lease service
# calling the gateway) could take one as its local port and a service started after it failed
# with PORT_IN_USE (seen in the WAN bench). Reserved ports are left out of the ephemeral choice;
# the setting is per network namespace, so the root namespace is not touched.
LAB_PORTS = "51000-51199"  # GATEWAY_PORT .. RELAY_PORT, the workers' services (PORT_SHIFT), the bench's


def reserve_ports(netns: str) -> None:
    """Keep the lab's service ports out of the ephemeral ports of namespace ``netns``."""
    run_ip(["ip", "netns", "exec", netns, "sh", "-c", f"echo {LAB_PORTS} > /proc/sys/net/ipv4/ip_local_reserved_ports"])


def namespaces_unavailable() -> str:
    """Why this process cannot build a lab ("" when it can): root, ``ip`` and ``tc``, a namespace."""
    if os.geteuid() != 0:
        return "the lab needs root (it creates network namespaces)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the lab needs `{tool}` (iproute2)"
    probe = f"{NETNS_PREFIX}probe-{os.getpid()}-{secrets.token_hex(2)}"
    made = run_ip(["ip", "netns", "add", probe], check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    run_ip(["ip", "netns", "del", probe], check=False)
    return ""


@dataclasses.dataclass(frozen=True)
class Host:
    """One host of the lab: its namespace and address."""

    name: str
    netns: str
    ip: str
    rate_mbit: float

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.netns, *argv]


def _used_subnets() -> set[int]:
    """Indexes (0-511) of the /24s of LAB_RANGE already on an interface of the root namespace."""
    out = run_ip(["ip", "-4", "-o", "addr", "show"], check=False).stdout
    used: set[int] = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" not in parts:
            continue
        address = ipaddress.ip_interface(parts[parts.index("inet") + 1]).ip
        if address in LAB_RANGE:
            used.add((int(address) - int(LAB_RANGE.network_address)) >> 8)
    return used


def _pick_subnet() -> ipaddress.IPv4Network:
    used = _used_subnets()
    free = [k for k in range(LAB_RANGE.num_addresses >> 8) if k not in used]
    if not free:
        raise LabError(ErrorKind.RESOURCE_EXHAUSTED, "no free /24 in 198.18.0.0/15", reason=LabReason.NO_SUBNET)
    k = free[secrets.randbelow(len(free))]
    base = ipaddress.IPv4Address(int(LAB_RANGE.network_address) + (k << 8))
    return ipaddress.ip_network(f"{base}/24")


class Network:
    """The namespaces, veths and qdiscs of one lab. ``create`` builds them, ``destroy`` (safe to
    call any number of times, also half-way through ``create``) removes every one of them and
    kills every process left inside the namespaces."""

    def __init__(self, hosts: Sequence[tuple[str, float]], *, lab_id: str = "") -> None:
        """``hosts``: (name, rate in Mbit/s) per host; names are short letters/digits/dashes."""
        if not hosts or len(hosts) > 200:
            raise LabError(ErrorKind.INVALID_ARGUMENT, "a lab has 1-200 hosts", reason=LabReason.BAD_SETTINGS)
        for name, rate in hosts:
            if not (name.replace("-", "").isalnum() and name.isascii() and len(name) <= 12):
                raise LabError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"host name {name!r}: use at most 12 letters, digits or '-'",
                    reason=LabReason.BAD_SETTINGS,
                )
            if not 0.1 <= rate <= 100_000:
                raise LabError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"rate of {name}: {rate} Mbit/s is outside 0.1-100000",
                    reason=LabReason.BAD_SETTINGS,
                )
        self.lab_id = lab_id or secrets.token_hex(3)
        self.prefix = f"{NETNS_PREFIX}{self.lab_id}-"
        self.bridge_netns = f"{self.prefix}br"
        self.control_link = f"{LINK_PREFIX}{self.lab_id}"
        self.subnet: ipaddress.IPv4Network | None = None
        self._specs = list(hosts)
        self.hosts: dict[str, Host] = {}
        self.created = False

    @property
    def control_ip(self) -> str:
        assert self.subnet is not None
        return str(self.subnet.network_address + CONTROL_HOST)

    def create(self) -> None:
        """Build the network (on failure, what was built is removed before the error leaves)."""
        why = namespaces_unavailable()
        if why:
            raise LabError(ErrorKind.FAILED_PRECONDITION, why, reason=LabReason.NO_NAMESPACES)
        self.created = True
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self._record().write_text(json.dumps({"pid": os.getpid(), "lab_id": self.lab_id}))
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise

    def _record(self) -> Path:
        return RUN_DIR / f"{self.lab_id}.json"

    def _build(self) -> None:
        br = self.bridge_netns
        run_ip(["ip", "netns", "add", br])
        run_ip(["ip", "-n", br, "link", "set", "lo", "up"])
        run_ip(["ip", "-n", br, "link", "add", BRIDGE, "type", "bridge"])
        run_ip(["ip", "-n", br, "link", "set", BRIDGE, "up"])
        # The control link: root namespace <-> bridge, not shaped.
        run_ip(["ip", "link", "add", self.control_link, "type", "veth", "peer", "name", "ctl", "netns", br])
        # NOTE: the lock keeps two labs that start at once from taking the same /24 (each sees
        # the other's address once it is on its link).
        with open(RUN_DIR / ".subnet.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.subnet = subnet = _pick_subnet()
            run_ip(["ip", "addr", "add", f"{self.control_ip}/24", "dev", self.control_link])
        run_ip(["ip", "link", "set", self.control_link, "up"])
        run_ip(["ip", "-n", br, "link", "set", "ctl", "master", BRIDGE, "up"])
        for index, (name, rate) in enumerate(self._specs, start=1):
            host = Host(name, f"{self.prefix}{name}", str(subnet.network_address + index), rate)
            run_ip(["ip", "netns", "add", host.netns])
            self.hosts[name] = host
            reserve_ports(host.netns)
            peer = f"v-{name}"
            run_ip(["ip", "-n", host.netns, "link", "set", "lo", "up"])
            run_ip(
                [
                    "ip",
                    "link",
                    "add",
                    HOST_IFACE,
                    "netns",
                    host.netns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    peer,
                    "netns",
                    br,
                ]
            )
            run_ip(["ip", "-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", HOST_IFACE])
            run_ip(["ip", "-n", host.netns, "link", "set", HOST_IFACE, "up"])
            run_ip(["ip", "-n", br, "link", "set", peer, "master", BRIDGE, "up"])
            # Upload: the host's own egress; download: the bridge port's egress towards the host.
            shape(host.netns, HOST_IFACE, rate)
            shape(br, peer, rate)

    def destroy(self) -> list[str]:
        """Kill what runs in the namespaces, remove namespaces, links and the owner record.
        Returns what was removed (for logs and tests)."""
        if not self.created:
            return []
        removed = destroy_lab(self.lab_id)
        self.created = False
        return removed


def shape(netns: str, iface: str, rate_mbit: float) -> None:
    """A tbf qdisc at ``rate_mbit`` as the root qdisc of ``iface`` in ``netns``."""
    rate = f"{rate_mbit * 1000:.0f}kbit"
    burst = str(tbf_burst(rate_mbit))
    qdisc = ["tbf", "rate", rate, "burst", burst, "latency", f"{TBF_LATENCY_MS}ms"]
    run_ip(["tc", "-n", netns, "qdisc", "replace", "dev", iface, "root", *qdisc])


def lab_namespaces(lab_id: str = "") -> list[str]:
    """The namespaces of lab ``lab_id`` (of every lab when empty)."""
    out = run_ip(["ip", "netns", "list"], check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    prefix = f"{NETNS_PREFIX}{lab_id}-" if lab_id else NETNS_PREFIX
    return sorted(n for n in names if n.startswith(prefix))


def lab_links(lab_id: str = "") -> list[str]:
    """The root-namespace links of lab ``lab_id`` (of every lab when empty)."""
    out = run_ip(["ip", "-o", "link", "show"], check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.count(":") >= 2]
    if lab_id:
        return [n for n in names if n == f"{LINK_PREFIX}{lab_id}"]
    return sorted(n for n in names if n.startswith(LINK_PREFIX) and n != LINK_PREFIX)


def lab_pids(lab_id: str = "") -> list[int]:
    """Processes inside the namespaces of lab ``lab_id`` (of every lab when empty)."""
    pids: list[int] = []
    for netns in lab_namespaces(lab_id):
        out = run_ip(["ip", "netns", "pids", netns], check=False).stdout
        pids += [int(p) for p in out.split() if p.isdigit()]
    return sorted(set(pids) - {os.getpid()})


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def lab_ids() -> list[str]:
    """Ids of every lab with a namespace, a root link or an owner record on this host."""
    ids = {n[len(NETNS_PREFIX) :].partition("-")[0] for n in lab_namespaces()}
    ids |= {n[len(LINK_PREFIX) :] for n in lab_links()}
    if RUN_DIR.is_dir():
        ids |= {p.stem for p in RUN_DIR.glob("*.json")}
    ids.discard("probe")
    return sorted(i for i in ids if i)


def owner(lab_id: str) -> int | None:
    """The process id that owns lab ``lab_id`` while it is alive, else None."""
    try:
        pid = int(json.loads((RUN_DIR / f"{lab_id}.json").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if _alive(pid) else None


def destroy_lab(lab_id: str) -> list[str]:
    """Remove every trace of lab ``lab_id``: SIGKILL its namespaces' processes, delete its
    namespaces and root link, remove its owner record."""
    removed: list[str] = []
    pids = lab_pids(lab_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    removed += [f"pid {p}" for p in pids]
    for netns in lab_namespaces(lab_id):
        # NOTE: the veths inside go with their namespace; a veth's peer goes with it.
        run_ip(["ip", "netns", "del", netns], check=False)
        removed.append(netns)
    for link in lab_links(lab_id):
        run_ip(["ip", "link", "del", link], check=False)
        removed.append(link)
    (RUN_DIR / f"{lab_id}.json").unlink(missing_ok=True)
    return removed


def clean(*, everything: bool = False) -> dict[str, list[str]]:
    """Remove leftover labs: those whose owner process is gone (every lab with ``everything``).
    Returns what was removed per lab id."""
    done: dict[str, list[str]] = {}
    for lab_id in lab_ids():
        if not everything and owner(lab_id) not in (None, os.getpid()):
            continue
        done[lab_id] = destroy_lab(lab_id)
    # Namespaces of an interrupted capability probe.
    for netns in lab_namespaces("probe"):
        run_ip(["ip", "netns", "del", netns], check=False)
    return done
