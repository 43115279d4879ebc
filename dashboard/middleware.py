"""Django's security and common middleware, with their hooks run inline under ASGI.

Both are MiddlewareMixin classes: under ASGI the mixin runs process_request and
process_response through sync_to_async, two hops to the one thread sync code shares, per
middleware, per request (four hops for an agent's PATCH, measured with py-spy). Their hooks
only read the request and set headers or answer a redirect, with no I/O, so here they run in
the event loop itself. Behaviour is Django's own, but for one addition: on agent paths a 404 or
405 answered as HTML comes back as the face's JSON (views/errors.api_refusal).
"""

from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware

from tasks_app.views.errors import REFUSALS, api_refusal, is_api_path


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
    def process_response(self, request, response):
        response = super().process_response(request, response)
        # An agent's SDK parses every refusal as JSON: no route or a wrong method on an agent
        # path (Django's and ninja's plain answers) comes back in the face's own shape.
        refused = response.status_code in REFUSALS and is_api_path(request.path)
        if refused and not response.get("Content-Type", "").startswith("application/json"):
            return api_refusal(request.path, response)
        return response
