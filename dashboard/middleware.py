"""Django's security and common middleware, with their hooks run inline under ASGI.

Both are MiddlewareMixin classes: under ASGI the mixin runs process_request and
process_response through sync_to_async, two hops to the one thread sync code shares, per
middleware, per request (four hops for an agent's PATCH, measured with py-spy). Their hooks
only read the request and set headers or answer a redirect, with no I/O, so here they run in
the event loop itself. Behaviour is Django's own: the hooks are not changed, only where they run.
"""

from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware


class InlineHooksMixin:
    async def __acall__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class InlineSecurityMiddleware(InlineHooksMixin, SecurityMiddleware):
    pass


class InlineCommonMiddleware(InlineHooksMixin, CommonMiddleware):
    pass
