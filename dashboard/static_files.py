"""WhiteNoise's static files, without making every request synchronous.

WhiteNoiseMiddleware (6.x) is sync-only. Django adapts a chain to its most restrictive member,
so with it in MIDDLEWARE every request, API writes included, ran through the one thread that
sync code shares (asgiref's thread_sensitive executor): the agent faces could never use more
than one database connection at a time however many requests were waiting. This subclass is
async-capable: a static path is served by WhiteNoise in a worker thread, anything else goes on
down an async chain.
"""

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None) -> None:
        super().__init__(get_response)
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if not self._async:
            return super().__call__(request)
        return self._acall(request)

    async def _acall(self, request):
        if self.autorefresh:
            # Development (DEBUG): looks in the finders' directories, i.e. the file system.
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)
