"""The HITL inbox (pending and decided tabs, filters in the URL) and the decide endpoint shared by
the inbox and the task page's decision panel."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from .. import selectors, services
from ..live.presenters import replay_context
from ..models import Agent, Face, HitlDecision, Organization
from ..services.validation import JsonRefused, lookup_text_ok, parse_json
from .tasks import no_organizations

INBOX = "approvals/inbox.html"
PANEL = "approvals/decision_panel.html"
TASK_PANEL = "tasks/task_detail.html#panel-hitl"
# A reviewer's amended payload is refused past this many characters (the service checks bytes too).
AMEND_TEXT_LIMIT = 200_000


def _filters(request, organizations) -> tuple[selectors.InboxFilters, list[str]]:
    """The inbox's filters from its URL; a value it does not know is named and left out."""
    errors = []
    agent = request.GET.get("agent", "").strip()[:200]
    if not lookup_text_ok(agent):
        errors.append("No agent has that name; showing every agent.")
        agent = ""
    organization_id = None
    if slug := request.GET.get("org", "").strip():
        found = [org for org in organizations if org.slug == slug]
        if found:
            organization_id = found[0].pk
        else:
            errors.append("You are in no organization by that name; showing all of yours.")
    due = request.GET.get("due", "")
    if due and due not in selectors.INBOX_DUE:
        errors.append(f"Unknown deadline filter; choose one of: {', '.join(selectors.INBOX_DUE.values())}.")
        due = ""
    sort = request.GET.get("sort", "") or "oldest"
    if sort not in selectors.INBOX_SORTS:
        errors.append("Unknown order; showing the oldest first.")
        sort = "oldest"
    decision = request.GET.get("decision", "")
    if decision and decision not in selectors.DECIDED_FILTERS:
        errors.append(f"Unknown decision filter; choose one of: {', '.join(selectors.DECIDED_FILTERS.values())}.")
        decision = ""
    filters = selectors.InboxFilters(
        agent=agent, organization_id=organization_id, due=due, sort=sort, decision=decision
    )
    return filters, errors


def _inbox_context(request, org_ids: list[int], tab: str) -> dict:
    """What both tabs show around their list: the filters, their choices and any refusal."""
    organizations = list(Organization.objects.filter(pk__in=org_ids).order_by("name"))
    filters, errors = _filters(request, organizations)
    agents = Agent.objects.filter(organization_id__in=org_ids).order_by("name").values_list("name", flat=True)
    selected_org = next((org for org in organizations if org.pk == filters.organization_id), None)
    # Agent and organization carry over between the tabs; each tab's own filters stay on it.
    shared = {"agent": filters.agent, "org": selected_org.slug if selected_org else ""}
    if tab == "pending":
        own = {"due": filters.due, "sort": "" if filters.sort == "oldest" else filters.sort}
    else:
        own = {"decision": filters.decision}
    return {
        "tab": tab,
        "tab_query": urlencode({name: value for name, value in shared.items() if value}),
        "filter_query": urlencode({name: value for name, value in {**shared, **own}.items() if value}),
        "filters": filters,
        "filter_errors": errors,
        "organizations": organizations,
        "several_organizations": len(organizations) > 1,
        "agents": sorted(set(agents)),
        "selected_org": selected_org,
        "due_choices": selectors.INBOX_DUE,
        "decision_choices": selectors.DECIDED_FILTERS,
        "now": timezone.now(),
        "show_task": True,
    }


def _render_tab(request, context: dict, partial: str):
    template = f"{INBOX}#{partial}" if request.htmx and not request.htmx.boosted else INBOX
    response = render(request, template, context)
    response["Vary"] = "HX-Request"
    if request.htmx:
        # The address bar gets the view's own URL: only the filters that narrow it, none empty.
        query = context["filter_query"]
        response["HX-Push-Url"] = request.path + (f"?{query}" if query else "")
    return response


@require_http_methods(["GET"])
@login_required
def inbox(request):
    """Pending requests: oldest first or soonest deadline first, by agent, organization, deadline."""
    # Deadlines are resolved by `manage.py expire_hitl` (a system job); doing it here for the
    # viewer's own organizations keeps the inbox honest without a worker (one indexed query when
    # nothing is due) and never touches another organization's requests.
    org_ids = selectors.organization_ids_for(request.user)
    if not org_ids:
        return no_organizations(request)
    services.hitl_expire_due(organization_ids=org_ids)
    # Read before the rows: an event committed in between is replayed by the socket, not lost.
    replay = replay_context(org_ids)
    context = {**_inbox_context(request, org_ids, "pending"), **replay}
    context["requests"] = list(selectors.pending_hitl_for_user(request.user, context["filters"], now=context["now"]))
    return _render_tab(request, context, "inbox-list")


@require_http_methods(["GET"])
@login_required
def decided(request):
    """Closed requests, newest decision first, a page at a time (keyset): who decided what, when."""
    org_ids = selectors.organization_ids_for(request.user)
    if not org_ids:
        return no_organizations(request)
    replay = replay_context(org_ids)
    context = {**_inbox_context(request, org_ids, "decided"), **replay}
    try:
        page = selectors.decided_hitl_page(request.user, context["filters"], before=request.GET.get("before") or None)
    except selectors.BadCursor as exc:
        context["filter_errors"].append(f"{exc} Showing the newest decisions.")
        page = selectors.decided_hitl_page(request.user, context["filters"])
    context.update(page=page, requests=page.requests, paged=bool(request.GET.get("before")))
    return _render_tab(request, context, "decided-list")


def _parse_amendment(hitl, raw: str | None):
    """(amended payload or None, error message or ""): unchanged JSON is not an amendment."""
    if raw is None or not raw.strip():
        return None, ""
    if len(raw) > AMEND_TEXT_LIMIT:
        return None, f"At most {AMEND_TEXT_LIMIT:,} characters."
    try:
        value = parse_json(raw)
    except JsonRefused as exc:
        return None, f"Invalid JSON: {exc}"
    if value == hitl.proposed_payload:
        return None, ""
    if value is None:
        return None, "An amended payload cannot be null; leave the editor closed to approve as proposed."
    return value, ""


# The decision form's buttons (name="action"); an offered option's button is "option:<the option>".
ACTIONS = {
    "approve": HitlDecision.APPROVED,
    "reject": HitlDecision.REJECTED,
    "respond": HitlDecision.RESPONDED,
    "dismiss": HitlDecision.DISMISSED,
}
OPTION_ACTION = "option:"


def _panel(request, hitl, *, status: int = 200, errors=None, notice: str = "", form=None):
    """The request as the page that posted shows it: an inbox card, or the task page's whole panel
    (its heading changes from "waiting" to the decision too)."""
    context = {
        "hitl": hitl,
        "errors": errors or {},
        "notice": notice,
        "form": form or {},
        "now": timezone.now(),
    }
    if request.POST.get("context", "inbox") == "task":
        context.update(task=hitl.task, latest_hitl=hitl, pending_hitl=hitl if hitl.is_pending else None)
        return render(request, TASK_PANEL, context, status=status)
    return render(request, PANEL, {**context, "show_task": True}, status=status)


@require_http_methods(["POST"])
@login_required
def decide(request, hitl_id: int):
    hitl = selectors.get_hitl_for_user(request.user, hitl_id)
    # Who may decide is services.may_decide_hitl (the same rule on every face): asked first so a
    # viewer's click is refused before the form is read.
    if not services.may_decide_hitl(services.Actor.for_user(request.user), hitl.organization_id):
        raise PermissionDenied("Your role in this organization is read-only.")
    action = request.POST.get("action", "")
    form = {
        "reason": request.POST.get("reason", ""),
        "comment": request.POST.get("comment", ""),
        "answer": request.POST.get("answer", ""),
        "amended_payload": request.POST.get("amended_payload"),
        "action": action,
    }
    option = action[len(OPTION_ACTION) :] if action.startswith(OPTION_ACTION) else None
    decision = HitlDecision.RESPONDED if option is not None else ACTIONS.get(action)
    if decision is None:
        errors = {"action": ["Choose a decision: approve, reject, answer or dismiss."]}
        return _panel(request, hitl, status=422, errors=errors, form=form)
    amended = None
    if decision == HitlDecision.APPROVED:
        amended, error = _parse_amendment(hitl, form["amended_payload"])
        if error:
            return _panel(request, hitl, status=422, errors={"amended_payload": [error]}, form=form)
    try:
        decided = services.hitl_decide(
            hitl=hitl.pk,
            organization_id=hitl.organization_id,
            actor=services.Actor.for_user(request.user, face=Face.DASHBOARD),
            decision=decision,
            reason=form["reason"],
            comment=form["comment"],
            answer=form["answer"],
            option=option,
            amended_payload=amended,
        )
    except services.InvalidInput as exc:
        return _panel(request, hitl, status=422, errors=exc.errors, form=form)
    except services.HitlAlreadyDecided as exc:
        exc.hitl.task = hitl.task
        return _panel(request, exc.hitl, status=409, notice=exc.message)
    except (services.HitlError, services.TransitionRefused, services.TaskNotFound) as exc:
        hitl.refresh_from_db()
        return _panel(request, hitl, status=409, notice=exc.message, form=form)
    if not request.htmx:
        return _redirect_back(request)
    decided.task = hitl.task
    return _panel(request, decided)


def _redirect_back(request) -> HttpResponse:
    """Plain form posts (no JavaScript) return to where they came from."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("approvals_inbox")
