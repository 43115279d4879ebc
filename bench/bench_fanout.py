"""Live fan-out: from a services.task_update commit to its fragment on ALL N open list sockets.

One daphne process (a subprocess on a free port, serving this run's throwaway database) holds N
websocket clients on the task list (/ws/tasks/, signed in as alice by session cookie). This
process commits task changes through tasks_app.services, which publish through Redis; the time
from the COMMIT (an on_commit hook that runs just before the publish) until the last of the N
sockets has the event's fragment is the event's fan-out latency. N=1 is the baseline, measured in
the same run; p50/p95 over the events of each N are printed with their ratios.

The server renders each event's fragment once per process (tasks_app.live), not once per socket:
daphne runs through bench/_daphne_counting.py, which counts the renders per event, and its CPU
time per event is read from /proc.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/10 \\
        .venv/bin/python bench/bench_fanout.py [--sizes 1,100,500] [--events 40]

Creates and drops its own database (TEST_DATABASE_NAME, default bench_taskdesk_fanout). The
websocket clients run in this process (the `websockets` library), so on a small machine their
own CPU is part of the figure, as a browser's would be on the client side.
"""

import argparse
import asyncio
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
_common.setup("bench_taskdesk_fanout")

from django.conf import settings  # noqa: E402
from django.db import connections, transaction  # noqa: E402

EVENT_ID_RE = re.compile(rb'data-event-id="(\d+)"')
TIMEOUT_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,500", help="socket counts; the first is the baseline")
    parser.add_argument("--events", type=int, default=40, help="events timed per socket count")
    parser.add_argument(
        "--org-tasks",
        type=int,
        default=0,
        help="extra tasks bulk-loaded into the organization (each pushed list fragment counts them by status)",
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
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


def start_daphne(render_log: Path, server_log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "TASKDESK_USE_TEST_DATABASE": "1",
        "TEST_DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
        "BENCH_RENDER_LOG": str(render_log),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
    }
    script = Path(__file__).resolve().parent / "_daphne_counting.py"
    with open(server_log, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), "-b", "127.0.0.1", "-p", str(port), "--access-log", os.devnull]
            + ["dashboard.asgi:application"],
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


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- The clients --------------------------------------------------------------------------


class Sockets:
    """N signed-in list sockets; each records when every event id first reached it."""

    def __init__(self) -> None:
        self.connections: list = []
        self.readers: list[asyncio.Task] = []
        self.arrivals: dict[int, list[float]] = {}
        self.waiters: dict[int, tuple[int, asyncio.Future]] = {}
        self.frame_bytes = 0

    async def open(self, url: str, cookie: str, count: int) -> None:
        from websockets.asyncio.client import connect

        async def one():
            ws = await connect(
                f"ws://{url}/ws/tasks/",
                origin=f"http://{url}",
                additional_headers={"Cookie": cookie},
                compression=None,
                proxy=None,
                open_timeout=30,
                max_queue=None,
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
    from django.contrib.auth import get_user_model
    from django.test import Client

    from tasks_app import services
    from tasks_app.models import Membership, Organization, Role

    acme = Organization.objects.create(slug="acme", name="Acme")
    alice = get_user_model().objects.create_user(username="alice", password="taskdesk")
    Membership.objects.create(user=alice, organization=acme, role=Role.OPERATOR)
    actor = services.Actor.for_user(alice)
    for i in range(20):  # a list page's worth of neighbours (the status-count bar counts them)
        services.task_create(organization=acme, actor=actor, id=f"other-{i}", title=f"Other {i}")
    task, _ = services.task_create(organization=acme, actor=actor, id="fan-1", title="Fan-out")
    if org_tasks:
        _common.copy_tasks("other-0", acme.pk, org_tasks)
        _common.analyze()
    print(f"organization: {21 + org_tasks:,} tasks; sockets on the task list as alice (operator)")
    client = Client()
    client.force_login(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    with tempfile.TemporaryDirectory(prefix="bench_fanout_") as workdir:
        render_log = Path(workdir) / "renders.log"
        render_log.touch()
        proc, url = start_daphne(render_log, Path(workdir) / "daphne.log")
        try:
            results = asyncio.run(measure(url, cookie, acme.pk, sizes, events, proc.pid, render_log))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
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


def commit_update(organization_id: int, i: int) -> tuple[int, float]:
    """One services.task_update; (event id, perf_counter at COMMIT, taken just before the publish)."""
    from tasks_app import services
    from tasks_app.models import TaskEvent

    committed: list[float] = []
    with transaction.atomic():
        # Registered first, so it runs right after COMMIT and before services' publish hook.
        transaction.on_commit(lambda: committed.append(time.perf_counter()))
        services.task_update(
            task="fan-1",
            organization_id=organization_id,
            actor=services.Actor.system("bench"),
            priority=i % 101,
            metadata={"i": i},
        )
    event_id = TaskEvent.objects.filter(task_id="fan-1").order_by("-id").values_list("id", flat=True)[0]
    return event_id, committed[0]


async def measure(
    url: str, cookie: str, organization_id: int, sizes: list[int], events: int, pid: int, render_log: Path
) -> list[dict]:
    loop = asyncio.get_running_loop()
    orm = ThreadPoolExecutor(max_workers=1)  # the ORM is sync-only: one thread, one connection
    sockets = Sockets()
    results = []
    counter = 0
    try:
        for n in sizes:
            t0 = time.perf_counter()
            await sockets.open(url, cookie, n)
            connect_s = time.perf_counter() - t0
            await asyncio.sleep(1.0)  # let the connects settle (their last_event_id queries, group_add)
            latencies, first_latencies, missed, event_ids = [], [], 0, []
            cpu_before, client_cpu_before = cpu_seconds(pid), time.process_time()
            for _ in range(events):
                counter += 1
                event_id, committed = await loop.run_in_executor(orm, commit_update, organization_id, counter)
                event_ids.append(event_id)
                try:
                    await asyncio.wait_for(sockets.expect(event_id, n), TIMEOUT_S)
                except TimeoutError:
                    missed += 1
                    continue
                arrivals = sockets.arrivals[event_id]
                latencies.append(max(arrivals) - committed)
                first_latencies.append(min(arrivals) - committed)
                await asyncio.sleep(0.02)  # events one at a time: latency, not throughput
            cpu_per_event = (cpu_seconds(pid) - cpu_before) / events
            client_cpu_per_event = (time.process_time() - client_cpu_before) / events
            await asyncio.sleep(0.2)
            renders = render_counts(render_log, set(event_ids))
            results.append(
                {
                    "n": n,
                    "connect_s": connect_s,
                    "latencies": latencies,
                    "first": first_latencies,
                    "missed": missed,
                    "cpu_ms": cpu_per_event * 1000,
                    "client_cpu_ms": client_cpu_per_event * 1000,
                    "frame_bytes": sockets.frame_bytes,
                    "renders": renders,
                }
            )
            print(f"  N={n}: {len(latencies)}/{events} events reached all sockets ({connect_s:.1f} s to connect)")
    finally:
        await sockets.close()
        # The ORM thread's connection would keep the database from being dropped.
        await loop.run_in_executor(orm, connections.close_all)
        orm.shutdown()
    return results


def render_counts(render_log: Path, event_ids: set[int]) -> dict[str, float]:
    """Renders per event (min, max) among event_ids, from the server's render log."""
    per_event = dict.fromkeys(event_ids, 0)
    for line in render_log.read_text().splitlines():
        event_id, _page = line.split()
        if int(event_id) in per_event:
            per_event[int(event_id)] += 1
    counts = list(per_event.values())
    return {"min": min(counts), "max": max(counts)}


def report(results: list[dict], events: int) -> None:
    base = results[0]
    base_p50 = _common.percentile(base["latencies"], 50) if base["latencies"] else 0.0
    base_p95 = _common.percentile(base["latencies"], 95) if base["latencies"] else 0.0
    print(f"\nfan-out latency, COMMIT -> fragment on ALL N sockets ({events} events per N, one at a time)")
    print(
        f"  {'N':>5} {'p50 ms':>8} {'p95 ms':>8} {'first p50':>10} {'ratio p50':>10} {'ratio p95':>10}"
        f" {'renders/event':>14} {'server CPU ms/ev':>17} {'client CPU ms/ev':>17} {'missed':>7}"
    )
    for r in results:
        if not r["latencies"]:
            print(f"  {r['n']:>5} no event reached every socket within {TIMEOUT_S:.0f} s")
            continue
        p50 = _common.percentile(r["latencies"], 50) * 1000
        p95 = _common.percentile(r["latencies"], 95) * 1000
        first = _common.percentile(r["first"], 50) * 1000
        renders = r["renders"]
        renders_text = str(renders["min"]) if renders["min"] == renders["max"] else f"{renders['min']}-{renders['max']}"
        print(
            f"  {r['n']:>5} {p50:8.1f} {p95:8.1f} {first:10.1f} {_common.ratio(p50, base_p50 * 1000):>10}"
            f" {_common.ratio(p95, base_p95 * 1000):>10} {renders_text:>14} {r['cpu_ms']:17.1f}"
            f" {r['client_cpu_ms']:17.1f} {r['missed']:>7}"
        )
    print(
        "\n  first p50: until the FIRST socket had it. renders/event: fragment renders in the server per"
        "\n  event (1 = once per event per process, whatever N). server CPU: daphne's user+system time per"
        "\n  event; client CPU: this process's (the N websocket clients and the ORM thread), on the same cores."
        f"\n  fragment size: {results[-1]['frame_bytes']:,} bytes per socket per event."
    )


if __name__ == "__main__":
    main()
