"""The HTTP server: the JSON API over jobs.service (and, later, the pages), for users with their
own tokens and for operators.

`web.app.create_app(settings)` builds the application; `jobctl serve` runs it under uvicorn.
Nothing is imported here, so that `jobctl` (which registers `serve` and `token` from
web.commands) starts without loading FastAPI.
"""
