"""Re-checking who is on the other end of every open socket and stream.

A socket is authenticated once, at connect, by its session; a stream by its API token. That
can go stale: the person logs out, the session expires, the password changes (Django then
invalidates every other session), the user is deactivated, removed from an organization or
given another role, or the token is revoked.

- `fingerprints(identities)`: per identity, a hash of everything that decides its access (its
  session's existence and expiry, the user's password hash and flags, its memberships and
  roles, its token's revocation, the organizations a superuser sees), computed by PostgreSQL in
  one query. The hub (live.hub) asks every few seconds; while nothing changes that is all it
  costs, however many sockets are open. It sees every change however it was made (the desk, the
  admin, a QuerySet.update, raw SQL), because it reads the rows, not signals.
- `sweep(identities)`: the verdict for identities whose fingerprint changed (or that are new),
  with a fixed number of queries whatever their number: `ended` (close it) or the organizations
  it may still see with whether it may edit each.
"""

from dataclasses import dataclass, field
from functools import cached_property
from importlib import import_module

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, get_user_model
from django.db import connection
from django.utils import timezone

from ..models import EDIT_ROLES, ApiToken, Membership, Organization


@dataclass(frozen=True)
class Identity:
    """Who a reader is: a signed-in session or an API token."""

    user_id: int | None = None
    session_key: str | None = None
    session_hash: str | None = None  # the session's auth hash at connect (password-bound)
    token_pk: int | None = None

    @cached_property
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


def fingerprints(identities: list[Identity]) -> dict[tuple, str]:
    """A hash per identity of what its access depends on; equal hashes need no sweep."""
    unique = list({identity.key: identity for identity in identities}.values())
    if not unique:
        return {}
    if connection.vendor != "postgresql" or not _database_sessions():
        # Development databases (SQLite) and other session stores: the sweep itself is the check.
        return {key: repr((v.ended, sorted(v.roles.items()))) for key, v in sweep(unique).items()}
    with connection.cursor() as cursor:
        cursor.execute(
            _fingerprint_sql(),
            [
                [i.session_key for i in unique],
                [i.user_id for i in unique],
                [i.token_pk for i in unique],
            ],
        )
        hashes = dict(cursor.fetchall())
    return {identity.key: hashes.get(n, "") for n, identity in enumerate(unique, start=1)}


def _database_sessions() -> bool:
    store = import_module(settings.SESSION_ENGINE).SessionStore
    get_model = getattr(store, "get_model_class", None)
    return get_model is not None and get_model()._meta.db_table == "django_session"


def _fingerprint_sql() -> str:
    user = get_user_model()._meta
    quote = connection.ops.quote_name
    users, pk = quote(user.db_table), quote(user.pk.column)
    memberships, tokens = quote(Membership._meta.db_table), quote(ApiToken._meta.db_table)
    organizations = quote(Organization._meta.db_table)
    # Everything sweep() reads, per identity; the organizations only matter to superusers.
    return f"""
        SELECT i.n, md5(concat_ws('|',
            (SELECT s.expire_date::text FROM django_session s
              WHERE s.session_key = i.session_key AND s.expire_date > now()),
            (SELECT u.password || ':' || u.is_active::text || ':' || u.is_superuser::text
               || CASE WHEN u.is_superuser
                       THEN (SELECT ':' || count(*) || ':' || coalesce(max(o.id), 0) FROM {organizations} o)
                       ELSE '' END
               FROM {users} u WHERE u.{pk} = i.user_id),
            (SELECT string_agg(m.organization_id || ':' || m.role, ',' ORDER BY m.organization_id, m.role)
               FROM {memberships} m WHERE m.user_id = i.user_id),
            (SELECT t.id::text FROM {tokens} t WHERE t.id = i.token_id AND t.revoked_at IS NULL)
        ))
        FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) WITH ORDINALITY AS i(session_key, user_id, token_id, n)
    """  # noqa: S608 (names from the models)
