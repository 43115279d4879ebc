"""Write throughput over HTTP: every agent face against raw psycopg and a bare Django view, one run.

A fleet of agents writes into ONE organization, each agent its own task, as fast as it can:

- **raw psycopg** (baseline): C clients in threads, each its own connection, one transaction per
  write: UPDATE the task's metadata `||` a patch (version + 1) and INSERT an event row. The SQL
  work of a write and nothing else.
- **bare Django view** (baseline): the same SQL through the ORM in a plain sync view with no
  middleware, under daphne (bench/_bare_urls.py): what Django and daphne cost by themselves.
- **Taskdesk**, one daphne process with DEBUG=false on PostgreSQL and Redis: the native
  `PATCH /api/v1/tasks/{id}`, xpander's `PATCH .../update`, Agentex's `PUT /tasks/{id}` and
  JSON-RPC `task.update`, each with token auth, rate limiting (limits raised so they never bite),
  validation, the lifecycle, the event row with its snapshot, the counters and the bell all on.
  Also: one client's PATCH latency, 8 agents (8 tokens) writing at once, and the native PATCH
  with its clients split over two daphne processes (several processes per machine, as the
  README's Production section runs them).

The ratio is writes/s against raw psycopg in the same run; the goal is >= 0.15, and a single
PATCH's p50 under 15 ms. The clients run in this process (httpx, keep-alive), so on a small
machine their CPU is part of every figure, baselines included.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/10 \\
        .venv/bin/python bench/bench_writes.py [--seconds 8] [--clients 4]
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _common

os.environ.setdefault("CHANNEL_PREFIX", f"benchwrites{os.getpid()}")
os.environ.setdefault("CACHE_PREFIX", f"benchwrites{os.getpid()}")
_common.setup("bench_taskdesk_writes")

from django.conf import settings  # noqa: E402

RATIO_GOAL = 0.15
LATENCY_GOAL_MS = 15.0
# Rate limiting stays on (every request pays for it) with limits no benchmark reaches.
UNLIMITED = "*=100000000/60,jsonrpc.task.update=100000000/60"


@dataclass
class Result:
    label: str
    writes: int
    seconds: float
    latencies: list[float]
    errors: int
    server_cpu: float = float("nan")  # the server's CPU seconds over the run
    cores: float = float("nan")  # the whole machine's busy cores over the run (clients, PostgreSQL...)

    @property
    def rate(self) -> float:
        return self.writes / self.seconds

    @property
    def cpu_ms(self) -> float:
        """The server's CPU per write: robust to what else runs on the machine."""
        return self.server_cpu / self.writes * 1000 if self.writes else float("nan")

    def p(self, q: float) -> float:
        return _common.percentile(self.latencies, q) * 1000 if self.latencies else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each measured run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent writers per face")
    parser.add_argument("--agents", type=int, default=8, help="agents (tokens) writing at once into one org")
    parser.add_argument(
        "--only", default="", help="comma-separated measures: bare,single,native,xpander,agentex,jsonrpc,fleet,pair"
    )
    parser.add_argument("--profile", metavar="FILE", help="py-spy record daphne (raw stacks) during one face's run")
    parser.add_argument(
        "--profile-face",
        default="native",
        choices=["native", "xpander", "agentex", "jsonrpc"],
        help="which run --profile samples",
    )
    args = parser.parse_args()
    _common.require_postgres("bench_writes")
    if not settings.REDIS_URL:
        sys.exit("bench_writes needs Redis (rate limits and bells, as in production): set REDIS_URL=redis://...")
    started = time.perf_counter()
    with _common.bench_database():
        failed = run(args)
    print(f"\ntotal runtime: {time.perf_counter() - started:.0f} s")
    if failed:
        sys.exit(1)


# --- load -----------------------------------------------------------------------------------


def load(
    label: str,
    clients: int,
    seconds: float,
    request: Callable,
    check: Callable = None,
    server: int | list[int] | None = None,
) -> Result:
    """`clients` threads, each with its own keep-alive connection, calling request(http, n, i);
    the CPU of the server process (or processes) is measured over the run."""
    servers = [server] if isinstance(server, int) else list(server or [])

    def server_cpu() -> float:
        return sum(_common.cpu_seconds(pid) for pid in servers)

    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    counts = [0] * clients
    ready = threading.Barrier(clients + 1)
    go = threading.Event()
    stop_at = [0.0]

    def worker(n: int) -> None:
        with httpx.Client(timeout=15.0) as http:
            for i in range(3):  # warm the connection, the token cache, the thread pool
                request(http, n, -1 - i)
            ready.wait()
            go.wait()
            i = 0
            while time.perf_counter() < stop_at[0]:
                began = time.perf_counter()
                response = request(http, n, i)
                latencies[n].append(time.perf_counter() - began)
                ok = response.status_code == 200 and (check is None or check(response))
                if ok:
                    counts[n] += 1
                else:
                    errors[n] += 1
                    if errors[n] == 1:
                        print(f"  {label}: {response.status_code} {response.text[:300]}", file=sys.stderr)
                i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    cpu, busy = server_cpu(), _common.busy_cpu_seconds()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu = server_cpu() - cpu if servers else float("nan")
    cores = (_common.busy_cpu_seconds() - busy) / elapsed
    return Result(label, sum(counts), elapsed, [x for lat in latencies for x in lat], sum(errors), cpu, cores)


def raw_psycopg(task_pks: list[int], organization_id: int, seconds: float) -> Result:
    """The SQL of a write and nothing else, one connection per client."""
    import psycopg

    db = settings.DATABASES["default"]
    conninfo = f"host={db['HOST']} port={db['PORT'] or 5432} dbname={db['NAME']} user={db['USER']}"
    clients = len(task_pks)
    counts = [0] * clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    ready = threading.Barrier(clients + 1)
    go = threading.Event()
    stop_at = [0.0]

    def worker(n: int) -> None:
        with psycopg.connect(conninfo) as conn:
            ready.wait()
            go.wait()
            i = 0
            while time.perf_counter() < stop_at[0]:
                began = time.perf_counter()
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(
                        "UPDATE tasks_app_task SET metadata = metadata || %s::jsonb, version = version + 1"
                        " WHERE id = %s RETURNING version",
                        [json.dumps({"n": i}), task_pks[n]],
                    )
                    (version,) = cur.fetchone()
                    cur.execute(
                        "INSERT INTO tasks_app_taskevent (task_id, organization_id, type, changes, before, after,"
                        " actor_kind, actor_label, face, task_version, created_at)"
                        " VALUES (%s, %s, 'task.updated', '[\"metadata\"]', '{}', %s::jsonb, 'system', 'raw', 'api',"
                        " %s, now())",
                        [task_pks[n], organization_id, json.dumps({"metadata": {"n": i}}), version],
                    )
                latencies[n].append(time.perf_counter() - began)
                counts[n] += 1
                i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    busy = _common.busy_cpu_seconds()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    go.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cores = (_common.busy_cpu_seconds() - busy) / elapsed
    return Result("raw psycopg", sum(counts), elapsed, [x for lat in latencies for x in lat], 0, cores=cores)


# --- the run --------------------------------------------------------------------------------


def run(args) -> bool:
    sys.path.insert(0, str(_common.ROOT))
    from tasks_app import services
    from tasks_app.models import Organization, Task
    from tests.servers import Daphne, collectstatic, production_env

    clients, agents = args.clients, args.agents
    org = Organization.objects.create(slug="fleet", name="Fleet")
    actor = services.Actor.system("bench")
    tokens = [services.api_token_create(organization=org, name=f"agent-{n}")[1] for n in range(max(clients, agents))]
    faces = ("raw", "bare", "native", "xpander", "agentex", "jsonrpc", "fleet", "single", "pair")
    ids: dict[str, list[str]] = {}
    for face in faces:
        count = agents if face == "fleet" else 1 if face == "single" else clients
        ids[face] = []
        for n in range(count):
            task, _ = services.task_create(
                organization=org, actor=actor, id=f"{face}-{n}", title=f"{face} {n}", agent="bench-agent"
            )
            ids[face].append(task.public_id)
    pks = {t.public_id: t.pk for t in Task.objects.filter(organization=org)}
    _common.analyze()

    results: list[tuple[Result, Result | None, str]] = []  # (result, baseline, goal)
    chosen = {name.strip() for name in args.only.split(",") if name.strip()}

    def want(name: str) -> bool:
        return not chosen or name in chosen

    raw = raw_psycopg([pks[i] for i in ids["raw"]], org.pk, args.seconds)
    print(f"raw psycopg, {clients} clients: {raw.rate:.0f} tx/s")

    work = Path(tempfile.mkdtemp(prefix="bench-writes-"))
    env = production_env(RATE_LIMITS=UNLIMITED, LOG_LEVEL="WARNING", STATIC_ROOT=str(work / "static"))
    collectstatic(work / "static", env)
    bench_dir = str(Path(__file__).resolve().parent)
    bare_env = {
        **env,
        "DJANGO_SETTINGS_MODULE": "_bare_settings",
        "PYTHONPATH": os.pathsep.join([bench_dir, str(_common.ROOT), env.get("PYTHONPATH", "")]),
    }
    taskdesk = Daphne(env, work, "taskdesk")
    second = Daphne(env, work, "taskdesk-2")  # for "pair": the same Taskdesk in a second process
    bare = Daphne(bare_env, work, "bare")
    try:
        taskdesk.start()
        bare.start(ready_path="/")  # its urlconf has one route: a 404 from Django means it is up

        def td(*args, **kwargs):
            return load(*args, **kwargs, server=taskdesk.proc.pid)

        def bare_request(http, n, i):
            return http.post(f"{bare.url}/bare/{pks[ids['bare'][n]]}", json={"metadata": {"n": i}})

        if want("bare"):
            bare_result = load("bare Django view", clients, args.seconds, bare_request, server=bare.proc.pid)
            results.append((bare_result, raw, ""))

        headers = [{"Authorization": f"Bearer {raw_token}"} for raw_token in tokens]
        xheaders = [{"x-api-key": raw_token} for raw_token in tokens]

        def native(face: str):
            def request(http, n, i):
                return http.patch(
                    f"{taskdesk.url}/api/v1/tasks/{ids[face][n]}", json={"metadata": {"n": i}}, headers=headers[n]
                )

            return request

        if want("single"):
            single = td("native PATCH, 1 client", 1, max(2.0, args.seconds / 2), native("single"))
            results.append((single, None, f"p50 < {LATENCY_GOAL_MS:.0f} ms"))

        def profiled(face: str, measure):
            """The measure, sampled by py-spy when --profile asks for this face."""
            spy = (
                _py_spy(taskdesk.proc.pid, args.seconds, args.profile)
                if args.profile and face == args.profile_face
                else None
            )
            result = measure()
            if spy is not None:
                spy.wait(timeout=60)
            return result

        if want("native"):
            native_run = profiled(
                "native", lambda: td(f"native PATCH, {clients} clients", clients, args.seconds, native("native"))
            )
            results.append((native_run, raw, ""))

        def xpander(http, n, i):
            return http.patch(
                f"{taskdesk.url}/xpander/agent-execution/{ids['xpander'][n]}/update",
                json={"result": f"step {i}"},
                headers=xheaders[n],
            )

        if want("xpander"):
            xpander_run = profiled(
                "xpander", lambda: td(f"xpander update, {clients} clients", clients, args.seconds, xpander)
            )
            results.append((xpander_run, raw, ""))

        def agentex(http, n, i):
            return http.put(
                f"{taskdesk.url}/agentex/tasks/{ids['agentex'][n]}",
                json={"task_metadata": {"n": i}},
                headers=headers[n],
            )

        if want("agentex"):
            agentex_run = profiled(
                "agentex", lambda: td(f"agentex update, {clients} clients", clients, args.seconds, agentex)
            )
            results.append((agentex_run, raw, ""))

        def jsonrpc(http, n, i):
            call = {"jsonrpc": "2.0", "id": i, "method": "task.update"}
            call["params"] = {"id": ids["jsonrpc"][n], "updates": {"metadata": {"n": i}}}
            return http.post(f"{taskdesk.url}/rpc", json=call, headers=headers[n])

        if want("jsonrpc"):
            name = f"JSON-RPC task.update, {clients} clients"
            check = lambda r: "result" in r.json()  # noqa: E731
            results.append(
                (profiled("jsonrpc", lambda: td(name, clients, args.seconds, jsonrpc, check=check)), raw, "")
            )
        if want("fleet"):
            fleet = td(f"native PATCH, {agents} agents, one org", agents, args.seconds, native("fleet"))
            results.append((fleet, raw, ""))
        if want("pair"):
            # Several processes per machine (README, Production): the same clients, half on each.
            second.start()
            urls = [taskdesk.url, second.url]

            def pair(http, n, i):
                return http.patch(
                    f"{urls[n % 2]}/api/v1/tasks/{ids['pair'][n]}", json={"metadata": {"n": i}}, headers=headers[n]
                )

            label = f"native PATCH, {clients} clients, 2 processes"
            pair_run = load(label, clients, args.seconds, pair, server=[taskdesk.proc.pid, second.proc.pid])
            results.append((pair_run, raw, ""))
    finally:
        taskdesk.stop()
        second.stop()
        bare.stop()

    print()
    print(f"{'measure':44} {'writes/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>7} {'cores':>6} {'ratio':>6}  goal")
    label = f"{raw.label}, {clients} clients"
    print(
        f"{label:44} {raw.rate:9.0f} {raw.p(50):8.1f} {raw.p(99):8.1f} {'-':>7} {raw.cores:6.2f} {'1.00':>6}  baseline"
    )
    failed = False
    for result, baseline, goal in results:
        ratio = result.rate / baseline.rate if baseline else None
        if not goal:
            goal = f"ratio >= {RATIO_GOAL}" if result.label != "bare Django view" else "baseline"
        met = ""
        if goal.startswith("ratio"):
            met = " ok" if ratio >= RATIO_GOAL else " MISSED"
        elif goal.startswith("p50"):
            met = " ok" if result.p(50) < LATENCY_GOAL_MS else " MISSED"
        shown = f"{ratio:6.3f}" if ratio is not None else "     -"
        print(
            f"{result.label:44} {result.rate:9.0f} {result.p(50):8.1f} {result.p(99):8.1f} {result.cpu_ms:7.1f}"
            f" {result.cores:6.2f} {shown}  {goal}{met}"
        )
        _common.summary_row(
            result.label,
            f"{result.rate:.0f}/s, p50 {result.p(50):.1f} ms",
            f"raw psycopg {raw.rate:.0f} tx/s" if baseline else "-",
            ratio,
            goal,
            None if result.label == "bare Django view" else ("ok" in met),
        )
        if result.errors:
            print(f"  {result.errors} requests failed", file=sys.stderr)
            failed = True
    return failed


def _py_spy(pid: int, seconds: float, out: str):
    import shutil
    import subprocess

    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [binary, "record", "-p", str(pid), "-d", str(int(seconds)), "-o", out, "-r", "100", "-f", "raw", "--gil"]
    return subprocess.Popen(command)


if __name__ == "__main__":
    main()
