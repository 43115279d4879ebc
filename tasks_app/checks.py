"""Start-up checks: an unreachable database is one clear line, not a 30 s hang and a traceback.

`database_problem()` opens one plain connection with a short timeout. It runs as a system check
tagged `database` (so `manage.py migrate` and `manage.py check --database default` stop at once)
and when daphne loads dashboard/asgi.py.
"""

from django.conf import settings
from django.core import checks


def database_problem(alias: str = "default") -> str | None:
    """Why the database cannot be reached, in one line, or None (SQLite needs no server)."""
    db = settings.DATABASES[alias]
    if not db["ENGINE"].endswith("postgresql"):
        return None
    import psycopg

    params = {"dbname": db["NAME"] or "postgres", "user": db.get("USER") or None, "host": db.get("HOST") or None}
    params |= {"port": db.get("PORT") or None, "password": db.get("PASSWORD") or None}
    timeout = db.get("OPTIONS", {}).get("connect_timeout", settings.DB_CONNECT_TIMEOUT)
    try:
        psycopg.connect(**{k: v for k, v in params.items() if v is not None}, connect_timeout=timeout).close()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())[:300]
        where = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"
        return f"Cannot reach the database at {where} (DATABASE_URL): {reason}"
    return None


@checks.register(checks.Tags.database)
def check_database_reachable(app_configs=None, databases=None, **kwargs):
    errors = []
    for alias in databases or ():
        if problem := database_problem(alias):
            errors.append(checks.Error(problem, id="taskdesk.E001"))
    return errors
