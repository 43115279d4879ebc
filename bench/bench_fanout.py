"""Live fan-out: from an agent's PATCH to its fragment on ALL N open list sockets, against bare Channels.

One daphne process (a subprocess on a free port, serving this run's throwaway database) holds N
websocket clients on the task list (/ws/tasks/, signed in as alice by session cookie). An agent
sends `PATCH /api/v1/tasks/{id}` to that process; the time from sending it until the last of the
N sockets has the event's fragment is the event's fan-out latency (p50, p99, and reach: the share
of events every socket got within 10 s).

The baseline, measured in the same run on the same machine and Redis: the bare Channels stack
(bench/_bare_channels.py), N sockets in one group, one group_send of a fragment-sized text that
each consumer forwards as is (no auth, no database, no rendering), timed from the group_send.
Also, first, both servers at once with N idle sockets each (the largest size), measured over the
same 60 s window so whatever else the machine does weighs on both alike: memory per idle socket
(RSS growth / N) and CPU, after a 20 s settle (the connects' own aftermath, such as a full garbage
collection, is not idling).

Taskdesk renders each event's fragment once per process (tasks_app.live), not once per socket:
its daphne runs through bench/_daphne_counting.py, which counts the renders per event.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/10 \\
        .venv/bin/python bench/bench_fanout.py [--sizes 1,100,1000] [--events 40]

Creates and drops its own database (TEST_DATABASE_NAME, default bench_taskdesk_fanout). The
websocket clients run in this process (the `websockets` library), so on a small machine their
own CPU is part of both figures, as a browser's would be on the client side.
"""

import argparse
import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common

# One channel-layer prefix for this process and its daphne, apart from anything else on the Redis DB.
os.environ.setdefault("CHANNEL_PREFIX", f"benchfanout{os.getpid()}")
# The sockets sign in with a session made here: it must be signed with the server's key
# (tests.servers.production_env, DEBUG off).
os.environ["SECRET_KEY"] = "test-production-secret-key-0123456789abcdef"
_common.setup("bench_taskdesk_fanout")

from django.conf import settings  # noqa: E402
from django.db import connections  # noqa: E402

PROFILE: str | None = None
PROFILE_IDLE: str | None = None
IDLE_SECONDS = 60.0
IDLE_SETTLE = 20.0
EVENT_ID_RE = re.compile(rb'data-event-id="(\d+)"')
TIMEOUT_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000", help="socket counts; the first is the baseline")
    parser.add_argument("--events", type=int, default=40, help="events timed per socket count")
    parser.add_argument(
        "--org-tasks",
        type=int,
        default=0,
        help="extra tasks bulk-loaded into the organization (each pushed list fragment counts them by status)",
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="how long the idle CPU is measured")
    parser.add_argument(
        "--idle-settle",
        type=float,
        default=20.0,
        help="wait after the connects before measuring idle (their aftermath, such as a full GC, is not idling)",
    )
    parser.add_argument("--profile", metavar="FILE", help="py-spy record daphne (raw) over the largest size's events")
    parser.add_argument("--profile-idle", metavar="FILE", help="py-spy record daphne (raw) while its sockets are idle")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    global PROFILE, PROFILE_IDLE
    PROFILE, PROFILE_IDLE = args.profile, args.profile_idle
    global IDLE_SECONDS, IDLE_SETTLE
    IDLE_SECONDS, IDLE_SETTLE = args.idle_seconds, args.idle_settle
    _common.require_postgres("bench_fanout")
    if not settings.REDIS_URL:
        sys.exit("bench_fanout needs Redis (the changes cross processes): set REDIS_URL=redis://...")
    try:
        import websockets  # noqa: F401
    except ImportError:
        sys.exit("bench_fanout needs the `websockets` package (pip install -r requirements-dev.txt)")
    started = time.perf_counter()
    with _common.bench_database():
        run(sizes, args.events, args.org_tasks)
    print(f"\ntotal runtime: {time.perf_counter() - started:.0f} s")


# --- The server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daphne(render_log: Path, server_log: Path, *, bare: bool = False) -> tuple[subprocess.Popen, str]:
    """Taskdesk's daphne (renders counted), or with bare=True the bare Channels app."""
    from tests.servers import collectstatic, production_env

    port = free_port()
    here = Path(__file__).resolve().parent
    # As in production: DEBUG off (no query logging, cached templates), static files collected.
    static_root = server_log.parent / "static"
    env = production_env(
        BENCH_RENDER_LOG=str(render_log),
        LOG_LEVEL="WARNING",
        STATIC_ROOT=str(static_root),
        PYTHONPATH=os.pathsep.join([str(here), str(settings.BASE_DIR)]),
    )
    if not bare and not static_root.exists():
        collectstatic(static_root, env)
    if bare:
        command = [sys.executable, "-m", "daphne", "_bare_channels:application"]
    else:
        command = [sys.executable, str(here / "_daphne_counting.py"), "dashboard.asgi:application"]
    with open(server_log, "wb") as log:
        proc = subprocess.Popen(
            command[:-1] + ["-b", "127.0.0.1", "-p", str(port), "--access-log", os.devnull, command[-1]],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
        )
    url = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://{url}/login/", timeout=1)  # noqa: S310 (our own server)
            return proc, url
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                sys.exit(f"daphne did not start:\n{server_log.read_text()}")
            time.sleep(0.2)


cpu_seconds = _common.cpu_seconds


# --- The clients --------------------------------------------------------------------------


class Sockets:
    """N signed-in list sockets; each records when every event id first reached it."""

    def __init__(self) -> None:
        self.connections: list = []
        self.readers: list[asyncio.Task] = []
        self.arrivals: dict[int, list[float]] = {}
        self.waiters: dict[int, tuple[int, asyncio.Future]] = {}
        self.frame_bytes = 0

    async def open(self, url: str, cookie: str, count: int, path: str = "/ws/tasks/") -> None:
        from websockets.asyncio.client import connect

        async def one():
            ws = await connect(
                f"ws://{url}{path}",
                origin=f"http://{url}",
                additional_headers={"Cookie": cookie},
                compression=None,
                proxy=None,
                open_timeout=30,
                max_queue=None,
                ping_interval=None,  # as a browser: daphne pings the client, the client never pings
            )
            self.connections.append(ws)
            self.readers.append(asyncio.create_task(self.read(ws)))

        batch = 50  # do not queue hundreds of handshakes at once on a 2-core machine
        for start in range(len(self.connections), count, batch):
            await asyncio.gather(*(one() for _ in range(min(batch, count - start))))

    async def read(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in ws:
                now = time.perf_counter()
                data = frame.encode() if isinstance(frame, str) else frame
                match = EVENT_ID_RE.search(data)
                if match is None:
                    continue
                event_id = int(match.group(1))
                self.frame_bytes = len(data)
                times = self.arrivals.setdefault(event_id, [])
                times.append(now)
                waiter = self.waiters.get(event_id)
                if waiter and len(times) >= waiter[0] and not waiter[1].done():
                    waiter[1].set_result(None)
        except ConnectionClosed:
            pass

    def expect(self, event_id: int, count: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if len(self.arrivals.get(event_id, ())) >= count:
            future.set_result(None)
        self.waiters[event_id] = (count, future)
        return future

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.connections), return_exceptions=True)
        for reader in self.readers:
            reader.cancel()


# --- The run ------------------------------------------------------------------------------


def run(sizes: list[int], events: int, org_tasks: int) -> None:
    sys.path.insert(0, str(settings.BASE_DIR))
    global stop_process
    from django.contrib.auth import get_user_model
    from django.test import Client

    from tasks_app import services
    from tasks_app.models import Membership, Organization, Role
    from tests.servers import stop as stop_process

    acme = Organization.objects.create(slug="acme", name="Acme")
    alice = get_user_model().objects.create_user(username="alice", password="taskdesk")
    Membership.objects.create(user=alice, organization=acme, role=Role.OPERATOR)
    actor = services.Actor.for_user(alice)
    for i in range(20):  # a list page's worth of neighbours (the status-count bar counts them)
        template, _ = services.task_create(organization=acme, actor=actor, id=f"other-{i}", title=f"Other {i}")
    services.task_create(organization=acme, actor=actor, id="fan-1", title="Fan-out")
    if org_tasks:
        _common.copy_tasks(template.pk, acme.pk, org_tasks)
        _common.analyze()
    _token, raw_token = services.api_token_create(organization=acme, name="fan-out agent")
    print(f"organization: {21 + org_tasks:,} tasks; sockets on the task list as alice (operator)")
    client = Client()
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    with tempfile.TemporaryDirectory(prefix="bench_fanout_") as workdir:
        render_log = Path(workdir) / "renders.log"
        render_log.touch()
        results = {}
        servers = {}
        try:
            for name in ("taskdesk", "bare"):
                servers[name] = start_daphne(render_log, Path(workdir) / f"{name}.log", bare=name == "bare")
            paths = {"taskdesk": "/ws/tasks/", "bare": "/ws/bare/"}
            targets = {name: (proc.pid, url, paths[name]) for name, (proc, url) in servers.items()}
            idle = asyncio.run(measure_idle(targets, cookie, sizes[-1]))
            size = 0
            for name, (proc, url) in servers.items():
                if name == "taskdesk":
                    trigger = PatchTrigger(url, raw_token, acme.pk)
                else:
                    trigger = GroupSendTrigger(frame_bytes=size)
                results[name] = asyncio.run(measure(url, cookie, sizes, events, proc.pid, render_log, trigger))
                results[name]["idle"] = idle[name]
                size = results[name]["frame_bytes"]
        finally:
            for proc, _url in servers.values():
                stop_process(proc)
            drop_channel_keys()
    report(results, events)


def drop_channel_keys() -> None:
    """Remove this run's channel-layer keys (groups the stopped server never left); the prefix is ours."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=os.environ["CHANNEL_PREFIX"] + ":*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


class PatchTrigger:
    """An agent's PATCH to the server the sockets are on; the event id is read back from the log."""

    path = "/ws/tasks/"

    def __init__(self, url: str, raw_token: str, organization_id: int) -> None:
        import logging

        import httpx

        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.http = httpx.Client(base_url=f"http://{url}", headers={"Authorization": f"Bearer {raw_token}"})
        self.organization_id = organization_id
        self.orm = ThreadPoolExecutor(max_workers=1)  # the ORM is sync-only: one thread, one connection

    def _fire(self, i: int) -> tuple[int, float]:
        from tasks_app.models import TaskEvent

        began = time.perf_counter()
        response = self.http.patch("/api/v1/tasks/fan-1", json={"priority": i % 101, "metadata": {"i": i}})
        response.raise_for_status()
        event_id = (
            TaskEvent.objects.filter(organization_id=self.organization_id, task__public_id="fan-1")
            .order_by("-id")
            .values_list("id", flat=True)[0]
        )
        return event_id, began

    async def fire(self, i: int) -> tuple[int, float]:
        return await asyncio.get_running_loop().run_in_executor(self.orm, self._fire, i)

    async def close(self) -> None:
        self.http.close()
        await asyncio.get_running_loop().run_in_executor(self.orm, connections.close_all)
        self.orm.shutdown()


class GroupSendTrigger:
    """The bare baseline: one group_send of a fragment-sized text, timed from the call."""

    path = "/ws/bare/"

    def __init__(self, frame_bytes: int) -> None:
        self.padding = "x" * max(0, frame_bytes - 40)

    async def fire(self, i: int) -> tuple[int, float]:
        from channels.layers import get_channel_layer

        event_id = 10_000_000 + i
        text = f'<tr data-event-id="{event_id}">{self.padding}</tr>'
        began = time.perf_counter()
        await get_channel_layer().group_send("bench-bare", {"type": "bare.message", "text": text})
        return event_id, began

    async def close(self) -> None:
        return None


def _py_spy(pid: int, out: str) -> subprocess.Popen:
    import shutil

    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    spy = subprocess.Popen([binary, "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", out])
    time.sleep(1.0)  # py-spy attaches
    return spy


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def measure(url, cookie, sizes, events, pid, render_log, trigger) -> dict:
    sockets = Sockets()
    rows = []
    counter = 0
    try:
        for n in sizes:
            t0 = time.perf_counter()
            await sockets.open(url, cookie, n, trigger.path)
            connect_s = time.perf_counter() - t0
            await asyncio.sleep(1.0)  # let the connects settle
            for _ in range(2):  # warm-up, untimed: first renders, token cache, connections
                counter += 1
                event_id, _began = await trigger.fire(counter)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sockets.expect(event_id, n), TIMEOUT_S)
            latencies, missed, event_ids = [], 0, []
            spy = _py_spy(pid, PROFILE) if PROFILE and n == sizes[-1] and trigger.path == "/ws/tasks/" else None
            cpu_before = cpu_seconds(pid)
            for _ in range(events):
                counter += 1
                event_id, began = await trigger.fire(counter)
                event_ids.append(event_id)
                try:
                    await asyncio.wait_for(sockets.expect(event_id, n), TIMEOUT_S)
                except TimeoutError:
                    missed += 1
                    continue
                latencies.append(max(sockets.arrivals[event_id]) - began)
                await asyncio.sleep(0.02)  # events one at a time: latency, not throughput
            cpu_per_event = (cpu_seconds(pid) - cpu_before) / events
            if spy is not None:
                spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
                spy.wait(timeout=60)
            await asyncio.sleep(0.2)
            rows.append(
                {
                    "n": n,
                    "connect_s": connect_s,
                    "latencies": latencies,
                    "missed": missed,
                    "reach": (events - missed) / events,
                    "cpu_ms": cpu_per_event * 1000,
                    "renders": render_counts(render_log, set(event_ids)),
                }
            )
            print(f"  N={n}: {len(latencies)}/{events} events reached all sockets ({connect_s:.1f} s to connect)")
    finally:
        await sockets.close()
        await trigger.close()
    return {"rows": rows, "frame_bytes": sockets.frame_bytes}


async def measure_idle(servers: dict[str, tuple[int, str, str]], cookie: str, n: int) -> dict[str, dict]:
    """N idle sockets on each server (name -> (pid, address, path)), both measured over the same
    window: what N open sockets cost while nothing happens, once the connects' own aftermath (a
    full garbage collection of what they allocated) has passed. Three of daphne's 20 s ping
    rounds by default."""
    before = {name: rss_kib(pid) for name, (pid, _url, _path) in servers.items()}
    sockets = {name: Sockets() for name in servers}
    try:
        for name, (_pid, url, path) in servers.items():
            await sockets[name].open(url, cookie, n, path)
        await asyncio.sleep(IDLE_SETTLE)
        pid = servers["taskdesk"][0]
        spy = _py_spy(pid, PROFILE_IDLE) if PROFILE_IDLE else None
        cpu0 = {name: cpu_seconds(pid) for name, (pid, _url, _path) in servers.items()}
        await asyncio.sleep(IDLE_SECONDS)
        cpu = {name: (cpu_seconds(pid) - cpu0[name]) / IDLE_SECONDS * 100 for name, (pid, *_rest) in servers.items()}
        if spy is not None:
            spy.send_signal(2)
            spy.wait(timeout=60)
        print(f"  idle: {n} sockets on each server, CPU over {IDLE_SECONDS:.0f} s")
        return {
            name: {"n": n, "cpu_pct": cpu[name], "rss_kib": rss_kib(pid) - before[name]}
            for name, (pid, *_rest) in servers.items()
        }
    finally:
        for group in sockets.values():
            await group.close()


def render_counts(render_log: Path, event_ids: set[int]) -> dict[str, float]:
    """Renders per event (min, max) among event_ids, from the server's render log."""
    per_event = dict.fromkeys(event_ids, 0)
    for line in render_log.read_text().splitlines():
        event_id, _page = line.split()
        if int(event_id) in per_event:
            per_event[int(event_id)] += 1
    counts = list(per_event.values())
    return {"min": min(counts), "max": max(counts)}


GOALS_P99_MS = {100: 50.0, 1000: 150.0}


def report(results: dict, events: int) -> None:
    def pct(row, q):
        return _common.percentile(row["latencies"], q) * 1000 if row["latencies"] else float("nan")

    bare = {row["n"]: row for row in results["bare"]["rows"]}
    print(f"\nfan-out, agent's PATCH -> fragment on ALL N sockets ({events} events per N, one at a time);")
    print("baseline: bare Channels, group_send -> text on all N sockets, same run")
    print(
        f"  {'N':>5} {'p50 ms':>8} {'p99 ms':>8} {'reach':>6} {'bare p50':>9} {'bare p99':>9} {'p99 ratio':>10}"
        f" {'renders/ev':>11} {'CPU ms/ev':>10} {'goal p99':>9}"
    )
    for row in results["taskdesk"]["rows"]:
        base = bare.get(row["n"])
        p99, base_p99 = pct(row, 99), pct(base, 99) if base else float("nan")
        renders = row["renders"]
        renders_text = str(renders["min"]) if renders["min"] == renders["max"] else f"{renders['min']}-{renders['max']}"
        goal = GOALS_P99_MS.get(row["n"])
        print(
            f"  {row['n']:>5} {pct(row, 50):8.1f} {p99:8.1f} {row['reach']:6.2f} {pct(base, 50) if base else 0:9.1f}"
            f" {base_p99:9.1f} {_common.ratio(p99, base_p99):>10} {renders_text:>11} {row['cpu_ms']:10.1f}"
            f" {goal if goal else '-':>9}"
        )
        met = None if goal is None else (p99 <= goal and row["reach"] == 1.0)
        _common.summary_row(
            f"fan-out p99, {row['n']} list socket{'s' if row['n'] > 1 else ''}",
            f"{p99:.1f} ms (p50 {pct(row, 50):.1f}), reach {row['reach']:.2f}",
            f"bare Channels p99 {base_p99:.1f} ms",
            p99 / base_p99 if base_p99 == base_p99 and base_p99 > 0 else None,
            f"p99 <= {goal:.0f} ms, reach 1.0" if goal else "reach 1.0",
            met if goal else row["reach"] == 1.0,
        )
    idle, bare_idle = results["taskdesk"]["idle"], results["bare"]["idle"]
    if idle and bare_idle:
        n = idle["n"]
        per, bare_per = idle["rss_kib"] / n, bare_idle["rss_kib"] / n
        print(
            f"\n  idle, {n} sockets: memory {per:.1f} KiB/socket (bare {bare_per:.1f}),"
            f" CPU {idle['cpu_pct']:.2f} % of a core (bare {bare_idle['cpu_pct']:.2f} %)"
        )
        mem_ratio = per / bare_per if bare_per > 0 else None
        cpu_ratio = idle["cpu_pct"] / bare_idle["cpu_pct"] if bare_idle["cpu_pct"] > 0 else None
        _common.summary_row(
            f"memory per idle socket ({n})",
            f"{per:.1f} KiB",
            f"bare Channels {bare_per:.1f} KiB",
            mem_ratio,
            "<= 1.2x bare",
            None if mem_ratio is None else mem_ratio <= 1.2,
        )
        _common.summary_row(
            f"CPU with {n} idle sockets",
            f"{idle['cpu_pct']:.2f} % of a core",
            f"bare Channels {bare_idle['cpu_pct']:.2f} %",
            cpu_ratio,
            "<= 1.2x bare",
            None if cpu_ratio is None else cpu_ratio <= 1.2,
        )
    print(
        "\n  renders/event: fragment renders in the server per event (1 = once per event per process,"
        f"\n  whatever N). fragment size: {results['taskdesk']['frame_bytes']:,} bytes per socket per event."
    )


if __name__ == "__main__":
    main()
