"""Re-checking who is on the other end of every open socket and stream, a few queries per sweep.

A socket is authenticated once, at connect, by its session; a stream by its API token. Between
sweeps (live.hub, every few seconds) that could go stale: the person logs out, the session
expires, the password changes (Django then invalidates every other session), the user is
deactivated, removed from an organization or given another role, or the token is revoked.

`sweep(identities)` answers for all of them with a fixed number of queries (sessions, users,
memberships, tokens) whatever the number of sockets, and returns a Verdict per identity:
`ended` (close it) or the organizations it may still see with whether it may edit each.
"""

from dataclasses import dataclass, field
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.utils import timezone

from ..models import EDIT_ROLES, ApiToken, Membership, Organization


@dataclass(frozen=True)
class Identity:
    """Who a reader is: a signed-in session or an API token."""

    user_id: int | None = None
    session_key: str | None = None
    session_hash: str | None = None  # the session's auth hash at connect (password-bound)
    token_pk: int | None = None

    @property
    def key(self) -> tuple:
        return (self.user_id, self.session_key, self.session_hash, self.token_pk)

    @classmethod
    def from_scope(cls, scope) -> "Identity":
        user = scope.get("user")
        session = scope.get("session")
        return cls(
            user_id=getattr(user, "pk", None),
            session_key=getattr(session, "session_key", None),
            session_hash=session.get(HASH_SESSION_KEY) if session is not None else None,
        )

    @classmethod
    def for_token(cls, token: ApiToken) -> "Identity":
        return cls(token_pk=token.pk)


@dataclass
class Verdict:
    ended: bool = False
    roles: dict[int, bool] = field(default_factory=dict)  # organization id -> may edit


def _live_sessions(keys: set[str]) -> set[str]:
    """The session keys that still exist and have not expired."""
    if not keys:
        return set()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    get_model = getattr(store, "get_model_class", None)
    if get_model is not None:  # database-backed sessions (db, cached_db): one query
        model = get_model()
        return set(
            model.objects.filter(session_key__in=keys, expire_date__gt=timezone.now()).values_list(
                "session_key", flat=True
            )
        )
    return {key for key in keys if store().exists(key)}


def sweep(identities: list[Identity]) -> dict[tuple, Verdict]:
    unique = {identity.key: identity for identity in identities}
    session_keys = {i.session_key for i in unique.values() if i.session_key}
    user_ids = {i.user_id for i in unique.values() if i.user_id is not None}
    token_pks = {i.token_pk for i in unique.values() if i.token_pk is not None}

    live_sessions = _live_sessions(session_keys)
    users = {user.pk: user for user in get_user_model().objects.filter(pk__in=user_ids)}
    roles: dict[int, dict[int, bool]] = {user_id: {} for user_id in user_ids}
    if any(user.is_superuser for user in users.values()):
        every_org = list(Organization.objects.values_list("pk", flat=True))
        for user in users.values():
            if user.is_superuser:
                roles[user.pk] = dict.fromkeys(every_org, True)
    for user_id, org_id, role in Membership.objects.filter(user_id__in=user_ids).values_list(
        "user_id", "organization_id", "role"
    ):
        roles[user_id][org_id] = roles[user_id].get(org_id, False) or role in EDIT_ROLES
    active_tokens = set(ApiToken.objects.filter(pk__in=token_pks, revoked_at__isnull=True).values_list("pk", flat=True))

    verdicts: dict[tuple, Verdict] = {}
    for key, identity in unique.items():
        if identity.token_pk is not None:
            verdicts[key] = Verdict(ended=identity.token_pk not in active_tokens)
            continue
        user = users.get(identity.user_id)
        ended = (
            user is None
            or not user.is_active
            or identity.session_key not in live_sessions
            or (identity.session_hash is not None and identity.session_hash != user.get_session_auth_hash())
        )
        verdicts[key] = Verdict(ended=ended, roles=roles.get(identity.user_id, {}) if not ended else {})
    return verdicts
