"""Agent-facing views run in worker threads of their own, not in the one thread sync views share.

Under ASGI, Django runs every sync view in asgiref's single thread_sensitive executor, so the
agent faces (a fleet of agents writing at once) could never use more than one database
connection at a time: four clients got the throughput of one. `in_worker_thread` makes a face's
sync view an async one that runs it in a thread of the default executor, with its own pooled
connection taken and returned around the call (channels' database_sync_to_async), so requests
overlap in the database and wait on PostgreSQL's locks, not on each other in Python.

A request from Django's sync handler (the test Client, WSGI) runs the view in the caller's own
thread, as before: its connection (and a test's transaction) is the caller's.
"""

import functools

from asgiref.sync import iscoroutinefunction, sync_to_async
from channels.db import database_sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.urls import URLPattern, URLResolver


def in_worker_thread(view):
    if iscoroutinefunction(view):
        return view
    threaded = database_sync_to_async(view, thread_sensitive=False)
    inline = sync_to_async(view, thread_sensitive=True)

    @functools.wraps(view)  # keeps csrf_exempt and the other attributes Django reads
    async def wrapper(request, *args, **kwargs):
        run = threaded if isinstance(request, ASGIRequest) else inline
        return await run(request, *args, **kwargs)

    return wrapper


def in_worker_threads(patterns: list) -> list:
    """The same URL patterns (included resolvers too), each sync view wrapped by in_worker_thread."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            in_worker_threads(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            pattern.callback = in_worker_thread(pattern.callback)
    return patterns
