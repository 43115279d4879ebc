"""Template helpers for the HITL inbox, decision panel and activity log."""

import json

from django import template
from django.utils import timezone

from .. import selectors
from ..live.timeline import json_diff
from ..models import Membership
from .taskdesk import age, task_url

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """Indented JSON for reading; the template escapes it like any other text."""
    if value is None:
        return ""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@register.filter
def payload_changes(hitl) -> list:
    """An amended payload against the agent's proposal, per key (the timeline's diff rows: name,
    op added/removed/changed, before, after); [] when the payload was not amended."""
    if hitl.amended_payload is None:
        return []
    return json_diff(hitl.proposed_payload, hitl.amended_payload)


@register.filter
def is_past(value) -> bool:
    """Whether a time has passed (a deadline), read when the fragment renders."""
    return value is not None and value <= timezone.now()


register.filter("task_url", task_url)
register.filter("age", age)


@register.simple_tag(takes_context=True)
def hitl_can_decide(context, hitl) -> bool:
    """Whether the viewer may decide this request: the one permission rule, from selectors."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        # Pushed fragments are rendered once per audience, without a request.
        return bool(context.get("can_edit"))
    return selectors.can_edit(user, hitl.organization_id)


@register.simple_tag(takes_context=True)
def pending_hitl_badge(context) -> int:
    """Pending requests across the viewer's organizations, in one query."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return 0
    cached = getattr(user, "_taskdesk_roles", None)
    org_ids = list(cached) if cached is not None else Membership.objects.filter(user=user).values("organization_id")
    return selectors.pending_hitl_count(org_ids)
