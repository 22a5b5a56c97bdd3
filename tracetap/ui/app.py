"""The web UI's ASGI app (Starlette) and its server (uvicorn): pages, JSON answers, a live event
stream of new rounds, an optional access token; it opens the store read-only.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.util
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from tracetap.storage import views
from tracetap.storage.filters import Filter, parse_when
from tracetap.ui.data import ContentView, round_content, session_detail, session_list

__all__ = ["TOKEN_COOKIE", "create_app", "is_loopback", "read_only", "serve"]

STATIC = Path(__file__).with_name("static")
TOKEN_COOKIE = "tracetap_token"
POLL_S = 0.25  # how often the event stream looks for a newer round
KEEPALIVE_S = 15.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name) binds to this machine alone."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_only(engine: Engine) -> Engine:
    """`engine` with every new connection refusing writes (SQLite `query_only`, PostgreSQL
    read-only transactions); connections it pooled before are dropped."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if engine.dialect.name == "sqlite":
            cur.execute("PRAGMA query_only=ON")
        elif engine.dialect.name == "postgresql":
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            dbapi_conn.commit()
        cur.close()

    sa.event.listen(engine, "connect", on_connect)
    engine.dispose()
    return engine


class _TokenGate:
    """Lets a request through only with the token: an `Authorization: Bearer` or
    `X-Tracetap-Token` header, `?token=` (which sets a cookie, so links and the event stream
    work after the first page), or that cookie."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        auth = request.headers.get("authorization", "")
        in_query = request.query_params.get("token")
        given = (
            request.headers.get("x-tracetap-token")
            or (auth[7:] if auth.lower().startswith("bearer ") else None)
            or in_query
            or request.cookies.get(TOKEN_COOKIE)
        )
        if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
            denied = PlainTextResponse(
                "this tracetap ui needs its token: open it with ?token=… "
                "(the one given to `tracetap ui --token`)",
                status_code=401,
            )
            await denied(scope, receive, send)
            return
        if in_query is None:
            await self.app(scope, receive, send)
            return

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        await self.app(scope, receive, with_cookie)


def _filter(request: Request) -> Filter:
    """The page's filter from its query: agent, model, project, since, until (ISO or an age)
    and q, a session id prefix. Raises ValueError naming a bad value."""
    q = request.query_params

    def many(name: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in q.getlist(name) if v.strip())

    def when(name: str) -> float | None:
        text = (q.get(name) or "").strip()
        return parse_when(text) if text else None

    return Filter(
        since=when("since"),
        until=when("until"),
        agents=many("agent"),
        models=many("model"),
        projects=many("project"),
        sessions=many("q") + many("session"),
    )


def create_app(
    engine: Engine,
    *,
    token: str | None = None,
    content: str = "redacted",
    datasets: Sequence[Path] = (),
    stopping: Callable[[], bool] = lambda: False,
) -> ASGIApp:
    """The UI on `engine` (opened read-only here). With `token`, every request needs it; event
    streams end once `stopping()` is true (the server is shutting down). `datasets` (folders
    made by `tracetap contribute`) add a Datasets page showing each one's privacy review.

    Example: uvicorn.run(create_app(make_engine(url, create=False)), port=8090)
    """
    read_only(engine)
    view = ContentView(content)

    def read(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        with OrmSession(engine) as db:
            return fn(db, *args, **kw)

    async def db_call(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await run_in_threadpool(partial(read, fn, *args, **kw))

    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve_page(request: Request) -> Response:
            headers = {"Cache-Control": "no-store"}
            if not datasets or name == "datasets.html":  # that one carries its own link
                return FileResponse(STATIC / name, headers=headers)
            html = (STATIC / name).read_text(encoding="utf-8")
            nav = ">Analysis</a>"  # the header's last link
            html = html.replace(nav, nav + '<a id="nav-datasets" href="/datasets">Datasets</a>', 1)
            return HTMLResponse(html, headers=headers)

        return serve_page

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name == "plotly.min.js":
            spec = importlib.util.find_spec("plotly")
            assert spec is not None and spec.origin is not None  # a dependency of tracetap
            path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
            return FileResponse(path, headers={"Cache-Control": "max-age=86400"})
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    async def api_sessions(request: Request) -> Response:
        try:
            flt = _filter(request)
            limit = max(1, min(int(request.query_params.get("limit") or 100), 1000))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(await db_call(session_list, flt, limit=limit))

    async def api_session(request: Request) -> Response:
        try:
            data = await db_call(session_detail, request.path_params["ref"])
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(data)

    async def api_round(request: Request) -> Response:
        try:
            data = await db_call(round_content, request.path_params["pk"], view)
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(data)

    async def api_latest(request: Request) -> Response:
        return JSONResponse({"latest": await db_call(views.latest_round)})

    async def api_analysis(request: Request) -> Response:
        from tracetap.ui.figures import analysis_figures

        try:
            flt = _filter(request)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        text = await run_in_threadpool(analysis_figures, engine, flt)
        return Response(text, media_type="application/json")

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            last = -1
            quiet = 0.0
            yield "retry: 1000\n\n"
            while not stopping() and not await request.is_disconnected():
                now = await db_call(views.latest_round)
                if now != last:
                    last, quiet = now, 0.0
                    yield f"data: {now}\n\n"
                elif quiet >= KEEPALIVE_S:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(POLL_S)
                quiet += POLL_S

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    async def api_datasets(request: Request) -> Response:
        from tracetap.ui.datasets import dataset_summary

        def summaries() -> list[dict[str, Any]]:
            return [dataset_summary(folder) for folder in datasets]

        try:
            return JSONResponse(await run_in_threadpool(summaries))
        except (OSError, ValueError) as exc:  # a folder changed since the UI started
            return JSONResponse({"error": str(exc)}, status_code=500)

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", page("sessions.html")),
        Route("/session/{ref:path}", page("session.html")),
        Route("/analysis", page("analysis.html")),
        Route("/static/{name}", static),
        Route("/favicon.ico", no_icon),
        Route("/api/sessions", api_sessions),
        Route("/api/session/{ref:path}", api_session),
        Route("/api/round/{pk:int}", api_round),
        Route("/api/latest", api_latest),
        Route("/api/analysis", api_analysis),
        Route("/api/events", events),
    ]
    if datasets:
        routes += [
            Route("/datasets", page("datasets.html")),
            Route("/api/datasets", api_datasets),
        ]
    app: ASGIApp = Starlette(routes=routes)
    return _TokenGate(app, token) if token else app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (OSError when it cannot be bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    engine: Engine,
    sock: socket.socket,
    *,
    token: str | None = None,
    content: str = "redacted",
    datasets: Sequence[Path] = (),
) -> None:
    """Serve the UI on the bound `sock` until SIGINT/SIGTERM (uvicorn then raises the signal
    again once it has stopped: KeyboardInterrupt for SIGINT)."""
    import uvicorn

    server: uvicorn.Server | None = None
    app = create_app(
        engine,
        token=token,
        content=content,
        datasets=datasets,
        stopping=lambda: server is not None and server.should_exit,
    )
    config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


def serve_url(url: str, sock: socket.socket) -> None:
    """Serve the UI on the store at `url` on the bound `sock` (what `tracetap proxy --ui-port`
    runs in a process of its own, so the proxy's event loop never waits on a page)."""
    from tracetap.storage.db import make_engine

    try:
        serve(make_engine(url, create=False), sock)
    except KeyboardInterrupt:  # Ctrl-C reaches the proxy's whole process group
        pass
