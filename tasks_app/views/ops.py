"""The operations view (/ops/): throughput, failures, durations, tokens, liveness and queues.

Everything comes from the rollups the write path keeps (services.rollups, read by
selectors.ops_report): a handful of queries whatever the number of tasks. The charts are SVG
drawn by the template from tasks_app.charts' geometry.

Live: the page holds a socket to its organization's bell (consumers.OpsConsumer, on the live hub
like every page), which pushes each event's id and nothing else. static/js/ops.js then refreshes
the body (the same URL, the fragment `#ops-body`) at most every MIN_GAP_SECONDS: a quiet
organization's view moves within a second of a write, a busy one's costs at most one refresh of
four reads per gap however fast it writes, and none while nothing happens and the tab is hidden.
Every SLIDE_SECONDS while shown it refreshes anyway, so the window slides past old minutes.
"""

from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from .. import charts, selectors
from ..models import ROLLUP_BUCKETS, ROLLUP_DURATION_BOUNDS, ROLLUP_SEEN_FACES, Face
from ..services.workers import WORKER_TTL
from .tasks import no_organizations

TEMPLATE = "ops/ops.html"
MIN_GAP_SECONDS = 2
SLIDE_SECONDS = 60
# An agent that wrote within LIVE_AFTER is live; within IDLE_AFTER idle; later silent.
LIVE_AFTER = timedelta(minutes=1)
IDLE_AFTER = timedelta(minutes=15)
FACE_LABELS = dict(Face.choices)


@require_GET
@login_required
def ops(request: HttpRequest) -> HttpResponse:
    organizations = selectors.organizations_for(request.user)
    if not organizations:
        return no_organizations(request)
    errors = []
    slug = request.GET.get("org", "")
    organization = next((o for o in organizations if o.slug == slug), None) if slug else organizations[0]
    if organization is None:
        raise Http404("No such organization.")  # another organization's slug reads like a missing one
    window = request.GET.get("window", "") or selectors.DEFAULT_OPS_WINDOW
    if window not in selectors.OPS_WINDOWS:
        errors.append(f"Unknown window {window!r}; showing the last hour.")
        window = selectors.DEFAULT_OPS_WINDOW
    agent = request.GET.get("agent", "").strip()[:200]
    report = selectors.ops_report(organization, window=window, agent=agent)
    if agent and report.agent != agent:
        errors.append(f"{organization.name} has no agent {agent!r}; showing every agent.")
    org_param = {"org": organization.slug} if slug else {}
    agent_param = {"agent": report.agent} if report.agent else {}
    context = {
        "nav": "ops",
        "organizations": organizations,
        "report": report,
        # The window links keep what applies (the organization, the agent filter) and nothing else.
        "windows": [
            (w, "?" + urlencode({**org_param, **agent_param, "window": w.key})) for w in selectors.OPS_WINDOWS.values()
        ],
        "query": "?" + urlencode({**org_param, **agent_param, "window": report.window.key}),
        "errors": errors,
        "min_gap_seconds": MIN_GAP_SECONDS,
        "slide_seconds": SLIDE_SECONDS,
        **figures(report),
    }
    template = TEMPLATE
    if request.htmx and not request.htmx.history_restore_request:
        # A refresh gets the numbers; the window links and filters swap the page with its controls.
        template += "#ops-body" if request.htmx.target == "ops-body" else "#ops-page"
    if not template.endswith("#ops-body"):
        # Where the page's socket starts (a refresh leaves the socket as it is).
        context["last_event_id"] = selectors.last_event_id([organization.pk])
    response = render(request, template, context)
    patch_vary_headers(response, ("HX-Request",))
    return response


def figures(report: selectors.OpsReport) -> dict:
    """The numbers and charts the page shows, from the report."""
    window, totals = report.window, report.totals
    minutes = window.span * window.buckets / 60
    per = "minute" if window.span == 60 else "hour"
    slots = [bucket.counts for bucket in report.buckets]
    starts = [bucket.start for bucket in report.buckets]
    titles = [_slot_title(bucket.start, bucket.counts, window.span) for bucket in report.buckets]
    throughput = charts.time_chart(
        starts,
        stacks={kind: [getattr(c, kind) for c in slots] for kind in ("completed", "failed", "stopped")},
        lines={"created": [c.created for c in slots]},
        titles=titles,
        time_label=_time_label(window.span, window.buckets),
        width=charts.WIDE,
    )
    rates = [None if c.failure_rate is None else c.failure_rate * 100 for c in slots]
    failures = charts.time_chart(
        starts,
        stacks={},
        lines={"failure-rate": rates},
        titles=titles,
        time_label=_time_label(window.span, window.buckets),
        y_format=lambda v: f"{v:g} %",
        y_max=max([r for r in rates if r is not None] + [10]),
    )
    p50, p95 = totals.percentile(0.5), totals.percentile(0.95)
    durations = charts.histogram_chart(
        totals.durations,
        ROLLUP_DURATION_BOUNDS,
        bound_label=charts.short_duration,
        markers={"p50": p50, "p95": p95},
    )
    agents = report.shown_agents
    most_tokens = max([a.counts.tokens for a in agents] + [1])
    most_pending = max([sum(a.pending.values()) for a in agents] + [1])
    return {
        "per": per,
        "created_rate": totals.created / minutes,
        "finished_rate": totals.finished / minutes,
        "p50": p50,
        "p95": p95,
        "open_ended": ROLLUP_DURATION_BOUNDS[-1],
        "throughput": throughput,
        "failures": failures,
        "durations": durations,
        "token_rows": [
            {
                "agent": a,
                "prompt": round(100 * a.counts.prompt_tokens / most_tokens, 2),
                "completion": round(100 * a.counts.completion_tokens / most_tokens, 2),
            }
            for a in sorted(agents, key=lambda a: -a.counts.tokens)
            if a.counts.tokens or a.key
        ],
        "queue_rows": [
            {"agent": a, "queue": queue, "pending": n, "width": round(100 * n / most_pending, 2)}
            for a in agents
            for queue, n in sorted(a.pending.items())
        ],
        "liveness": [_liveness(a, report.now) for a in agents if a.key],
        "faces": [(face, FACE_LABELS[face]) for face in ROLLUP_SEEN_FACES],
        "workers": [{"worker": w, "alive": report.now - w.last_heartbeat_at <= WORKER_TTL} for w in report.workers],
        "bucket_count": len(ROLLUP_BUCKETS),
    }


def _slot_title(start: datetime, counts: selectors.OpsCounts, span: int) -> str:
    when = start.strftime("%a %H:%M" if span >= 3600 else "%H:%M") + " UTC"
    parts = [f"{counts.created:,} created", f"{counts.finished:,} finished"]
    if counts.finished:
        parts[-1] += f" ({counts.completed:,} completed, {counts.failed:,} failed, {counts.stopped:,} stopped)"
        parts.append(f"failure rate {counts.failure_rate * 100:.0f} %")
    return f"{when}: " + ", ".join(parts)


def _time_label(span: int, buckets: int):
    if span == 60:
        return lambda start: start.strftime("%H:%M") if start.minute % 10 == 0 else None
    if buckets <= 24:
        return lambda start: start.strftime("%H:00") if start.hour % 3 == 0 else None
    return lambda start: start.strftime("%a %d") if start.hour == 0 else None


def _liveness(agent: selectors.OpsAgent, now: datetime) -> dict:
    def state(when: datetime | None) -> str:
        if when is None:
            return "never"
        age = now - when
        return "live" if age <= LIVE_AFTER else "idle" if age <= IDLE_AFTER else "silent"

    return {
        "agent": agent,
        "state": state(agent.last_seen),
        "faces": [(face, agent.seen.get(face), state(agent.seen.get(face))) for face in ROLLUP_SEEN_FACES],
    }
