"""The query API, the dashboard and /metrics, served by the worker's Faust web server.

Thin glue: parse the request into a pydantic model, call ``marketban.service.queries`` (or the
engine's dry run, or the violation log), write the model as JSON. Account-keyed requests go to the
worker that owns the account's task (the decider's assignor tells every worker each owner's URL);
the register and the violations are broadcast views, so any worker answers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, time
from importlib import resources
from typing import Any, Final, Literal, Protocol
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError
from faust.web import View
from pydantic import BaseModel, ValidationError
from yarl import URL

from marketban.adapters.metrics import CONTENT_TYPE
from marketban.adapters.tokens import Analysts
from marketban.domain.bans import BanView
from marketban.domain.calendars import MarketCalendar
from marketban.domain.engine import Engine
from marketban.domain.fastpath import DecisionRecord, json_bytes
from marketban.domain.models import AccountLink, Decision, Order, Violation
from marketban.domain.wire import DecodeError, validate
from marketban.service import queries
from marketban.service.monitor import (
    Disposition,
    DispositionRequest,
    DispositionStatus,
    ViolationEntry,
    ViolationLog,
)
from marketban.service.openapi import openapi
from marketban.service.queries import (
    AccountQuery,
    BansQuery,
    CheckResult,
    Stats,
    StatsQuery,
    ViolationsQuery,
)
from marketban.settings import Settings

log = logging.getLogger(__name__)

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
#: Set on a request one worker passes to the owner of its key, so it is never passed on again.
ROUTED_HEADER: Final = "X-Marketban-Routed"
#: Seconds between SSE comments that keep idle connections (and proxies) open.
SSE_HEARTBEAT_S: Final = 15.0
#: Violations a slow SSE client may have pending before it is disconnected.
SSE_QUEUE: Final = 1000
_STATIC: Final = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}

Handler = Callable[..., Awaitable[web.StreamResponse]]


class ApiProblem(Exception):  # noqa: N818 - an HTTP answer, not a crash
    """Raised by a handler to answer with an error: status and a message a person can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AccountOwners(Protocol):
    """Who holds an account's state: this worker's engine for it, or the owner's URL."""

    def engine_for(self, account_id: str) -> Engine | None:
        """The local engine that owns the account, or None."""

    def owner_url(self, account_id: str) -> str | None:
        """The URL of the worker that owns the account, when known."""


class Api:
    """Registers every web page of the worker on its Faust app."""

    def __init__(  # noqa: PLR0917 - the worker's parts this layer reads, each named
        self,
        app: Any,  # noqa: ANN401 - faust is untyped
        settings: Settings,
        accounts: AccountOwners,
        register: BanView,
        calendar: MarketCalendar,
        violations: ViolationLog,
        record_disposition: Callable[[Disposition], Awaitable[None]],
        record_link: Callable[[AccountLink], Awaitable[None]],
        readiness: Callable[[], Mapping[str, bool]],
        metrics: Callable[[], bytes],
    ) -> None:
        self.app = app
        self.settings = settings
        self.accounts = accounts
        self.register = register
        self.calendar = calendar
        self.violations = violations
        self._record_disposition = record_disposition
        self._record_link = record_link
        self._readiness = readiness
        self._metrics = metrics
        self.analysts = Analysts(settings.api_token.get_secret_value(), settings.api_tokens_file)
        self._static = {
            name: (resources.files("marketban.adapters").joinpath("dashboard", name).read_bytes())
            for name in _STATIC
        }
        self._openapi = orjson.dumps(openapi())

    # ---- registration --------------------------------------------------------------------------

    def install(self) -> None:
        """Add every page to the Faust app (before it starts)."""
        pages: list[tuple[str, str, Handler, Literal["get", "post"]]] = [
            ("/", "dashboard", self._dashboard, "get"),
            ("/static/{name}", "static", self._static_file, "get"),
            ("/metrics", "metrics", self._metrics_page, "get"),
            ("/api/openapi.json", "openapi", self._openapi_page, "get"),
            ("/api/accounts/{account_id}", "account", self._account, "get"),
            ("/api/check", "check", self._check, "get"),
            ("/api/bans", "bans", self._bans, "get"),
            ("/api/bans/{decision_id}", "ban", self._ban, "get"),
            ("/api/violations", "violations", self._violations, "get"),
            ("/api/violations/stream", "violation_stream", self._stream, "get"),
            ("/api/violations/{violation_id}", "violation", self._violation, "get"),
            (
                "/api/violations/{violation_id}/acknowledge",
                "acknowledge",
                self._acknowledge,
                "post",
            ),
            ("/api/violations/{violation_id}/confirm", "confirm", self._confirm, "post"),
            ("/api/violations/{violation_id}/dismiss", "dismiss", self._dismiss, "post"),
            (
                "/api/accounts/{account_id}/controllers/{person_id}/revoke",
                "revoke_controller",
                self._revoke_controller,
                "post",
            ),
            ("/api/stats", "stats", self._stats, "get"),
        ]
        for path, name, handler, method in pages:
            self.app.page(path)(_view(name, method, self._guard(handler, method)))

    def _guard(self, handler: Handler, method: str) -> Handler:
        """Wrap a handler: token check, readiness for /api, JSON errors for every failure."""
        write = method == "post"

        async def guarded(request: web.Request, **match: str) -> web.StreamResponse:
            path = request.path
            # The Art. 13 register is public; so are the API's description and the static page.
            public = path == "/api/openapi.json" or path.startswith("/api/bans")
            api = path.startswith("/api/") and not (public and not write)
            try:
                if api:
                    request["analyst"] = self._authorize(request, write=write)
                return await handler(request, **match)
            except ApiProblem as problem:
                return _error(problem.status, problem.message)
            except ValidationError as exc:
                return _error(400, _validation_text(exc))
            except Exception:  # a bug answers 500, it must not take the worker's loop down
                # The route's pattern, not the path: a path names an account or a decision.
                route = request.match_info.route.resource
                log.exception("internal error serving %s", route.canonical if route else "?")
                return _error(500, "internal error; the worker log has the details")

        return guarded

    def _authorize(self, request: web.Request, *, write: bool) -> str | None:
        """The analyst the request's token belongs to (None for an open read); else a 401/403."""
        if not write and not self.settings.api_read_token_required:
            return None
        if not self.analysts.configured:
            raise ApiProblem(
                403,
                "writes are disabled: the worker has no MARKETBAN_API_TOKEN or "
                "MARKETBAN_API_TOKENS_FILE"
                if write
                else "reads need a token but the worker has no MARKETBAN_API_TOKEN or "
                "MARKETBAN_API_TOKENS_FILE (MARKETBAN_API_READ_TOKEN_REQUIRED=false opens them)",
            )
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiProblem(401, "this needs an Authorization: Bearer <token> header")
        analyst = self.analysts.analyst(given.strip())
        if analyst is None:
            raise ApiProblem(403, "the bearer token is not valid (unknown or revoked)")
        return analyst

    def _require_ready(self) -> None:
        checks = self._readiness()
        waiting = [name for name, ok in checks.items() if not ok]
        if waiting:
            raise ApiProblem(503, f"the worker is not ready ({', '.join(waiting)}); retry shortly")

    # ---- routing -------------------------------------------------------------------------------

    async def _owner_engine(self, request: web.Request, account_id: str) -> Engine | web.Response:
        """This worker's engine for ``account_id``, or the answer of the worker that owns it."""
        engine = self.accounts.engine_for(account_id)
        if engine is not None:
            return engine
        if request.headers.get(ROUTED_HEADER):
            # Passed on already: never bounce again (the assignment is changing).
            raise ApiProblem(503, "partitions are being assigned; retry shortly")
        owner = self.accounts.owner_url(account_id)
        if not owner or owner == self.settings.web_url:
            raise ApiProblem(503, "partitions are being assigned; retry shortly")
        url = URL(owner)
        headers = {ROUTED_HEADER: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        target = request.url.with_scheme(url.scheme or "http").with_host(url.host or "")
        target = target.with_port(url.port)
        try:
            async with self.app.http_client.get(target, headers=headers) as answer:
                body = await answer.read()
                return web.Response(
                    body=body, status=answer.status, content_type=answer.content_type
                )
        except (OSError, TimeoutError) as exc:
            raise ApiProblem(
                503, f"the worker owning this account ({url}) did not answer: {type(exc).__name__}"
            ) from None

    # ---- pages ---------------------------------------------------------------------------------

    async def _dashboard(self, _request: web.Request) -> web.StreamResponse:
        return self._static_response("index.html")

    async def _static_file(self, _request: web.Request, name: str) -> web.StreamResponse:
        if name not in _STATIC:
            raise ApiProblem(404, f"no static file {name!r}")
        return self._static_response(name)

    def _static_response(self, name: str) -> web.Response:
        return web.Response(
            body=self._static[name],
            content_type=_STATIC[name],
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def _metrics_page(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._metrics(), headers={"Content-Type": CONTENT_TYPE})

    async def _openapi_page(self, _request: web.Request) -> web.StreamResponse:
        return _json_response(self._openapi)

    async def _account(self, request: web.Request, account_id: str) -> web.StreamResponse:
        engine = await self._owner_engine(request, account_id)
        if isinstance(engine, web.Response):
            return engine
        self._require_ready()
        query = AccountQuery.model_validate(dict(request.query))
        now = datetime.now(SHANGHAI)  # wall-clock ok: "now" of a query, never of a decision (R6)
        today = query.at or now.date()
        # A day asked about means its trading hours: its own session, or the next if closed.
        at = now if query.at is None else datetime.combine(today, time(9, 30), SHANGHAI)
        state = engine.state
        link = state.links.get(account_id)
        account = state.accounts.get(account_id)
        controllers = state.controllers.get(account_id)
        if link is None and account is None and controllers is None:
            raise ApiProblem(404, f"no account {account_id!r} is known to marketban")
        session = self.calendar.session_of(at).day
        view = queries.account_view(
            account_id, link, state.persons, account, today=today, session=session,
            controllers=controllers,
        )  # fmt: skip
        return _model_response(view)

    async def _check(self, request: web.Request) -> web.StreamResponse:
        account_id = request.query.get("account_id", "")
        if not account_id:
            raise ApiProblem(400, "account_id is required")
        engine = await self._owner_engine(request, account_id)
        if isinstance(engine, web.Response):
            return engine
        self._require_ready()
        try:
            order = validate(Order, _order_fields(request.query))
        except DecodeError as exc:
            raise ApiProblem(400, f"invalid order: {exc}") from None
        outputs = engine.dry_run(order)
        topic, _key, value = outputs[0]
        if topic == "rejected":
            raise ApiProblem(409, getattr(value, "error", "the order cannot be decided"))
        decision = value.to_model() if isinstance(value, DecisionRecord) else value
        result = CheckResult(
            decision=Decision.model_validate(decision, from_attributes=True),
            violation="blocked_attempt" if any(t == "violations" for t, _, _ in outputs) else None,
        )
        return _model_response(result)

    async def _bans(self, request: web.Request) -> web.StreamResponse:
        self._require_view()
        q = BansQuery.model_validate(dict(request.query))
        records = self.register.decisions()
        return _model_response(
            queries.register_page(records, q.offset, q.limit, person_id=q.person_id, text=q.q)
        )

    async def _ban(self, _request: web.Request, decision_id: str) -> web.StreamResponse:
        self._require_view()
        record = self.register.decision(decision_id)
        if record is None:
            raise ApiProblem(404, f"no decision {decision_id!r} is in the register")
        return _model_response(queries.register_detail(record))

    def _require_view(self) -> None:
        if not self._readiness().get("ban_view_loaded", False):
            raise ApiProblem(503, "the ban register is still loading; retry shortly")

    async def _violations(self, request: web.Request) -> web.StreamResponse:
        q = ViolationsQuery.model_validate(dict(request.query))
        page = self.violations.page(
            q.offset, q.limit, kind=q.kind, broker=q.broker, session=q.session,
            account_id=q.account_id,
        )  # fmt: skip
        return _model_response(page)

    async def _violation(self, _request: web.Request, violation_id: str) -> web.StreamResponse:
        entry = self.violations.get(violation_id)
        if entry is None:
            raise ApiProblem(404, f"no violation {violation_id!r} is among those kept")
        return _model_response(entry)

    async def _acknowledge(self, request: web.Request, violation_id: str) -> web.StreamResponse:
        self._kept(violation_id)
        return await self._dispose(request, violation_id, "acknowledged")

    async def _dismiss(self, request: web.Request, violation_id: str) -> web.StreamResponse:
        self._suspicion(violation_id)
        return await self._dispose(request, violation_id, "dismissed")

    async def _confirm(self, request: web.Request, violation_id: str) -> web.StreamResponse:
        """R8: the analyst confirms that the suspected person controls the account."""
        v = self._suspicion(violation_id)
        if v.person_id is None:
            raise ApiProblem(409, f"violation {violation_id!r} names no person")
        link = AccountLink(
            account_id=v.account_id,
            person_id=v.person_id,
            kind="controlled",
            reference=violation_id,
            confirmed_by=request.get("analyst"),
        )
        await self._write(self._record_link(link), "the controlled link")
        return await self._dispose(request, violation_id, "confirmed")

    async def _revoke_controller(
        self, request: web.Request, account_id: str, person_id: str
    ) -> web.StreamResponse:
        ask = await _disposition_request(request)
        link = AccountLink(
            account_id=account_id,
            person_id=person_id,
            kind="controlled",
            reference=ask.note or None,
            revoked=True,
            confirmed_by=request.get("analyst"),
        )
        await self._write(self._record_link(link), "the revocation")
        return _model_response(link, status=202)

    def _kept(self, violation_id: str) -> ViolationEntry:
        entry = self.violations.get(violation_id)
        if entry is None:
            raise ApiProblem(404, f"no violation {violation_id!r} is among those kept")
        return entry

    def _suspicion(self, violation_id: str) -> Violation:
        v = self._kept(violation_id).violation
        if v.kind != "suspected_proxy_trading":
            raise ApiProblem(409, f"violation {violation_id!r} is a {v.kind}, not a suspicion")
        return v

    async def _dispose(
        self, request: web.Request, violation_id: str, status: DispositionStatus
    ) -> web.StreamResponse:
        ask = await _disposition_request(request)
        disposition = Disposition(
            violation_id=violation_id,
            status=status,
            note=ask.note,
            # Who acted is the token's analyst, never a name the request claims.
            by=request.get("analyst") or "",
            at=datetime.now(UTC),  # wall-clock ok: when the analyst acted, not a decision input
        )
        await self._write(self._record_disposition(disposition), "the disposition")
        return _model_response(disposition, status=202)

    @staticmethod
    async def _write(sending: Awaitable[None], what: str) -> None:
        try:
            await sending
        except (KafkaError, OSError, TimeoutError) as exc:
            raise ApiProblem(
                503, f"{what} could not be recorded in Kafka ({type(exc).__name__}); retry"
            ) from None

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        q = StatsQuery.model_validate(dict(request.query))
        tally = self.violations.tally
        stats = Stats(
            totals=dict(sorted(tally.totals.items())),
            series=tally.series(q.minutes),
            violations_kept=len(self.violations),
        )
        return _model_response(stats)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``violation`` event per new or newly acknowledged violation."""
        queue: asyncio.Queue[ViolationEntry | None] = asyncio.Queue(SSE_QUEUE)

        def listen(entry: ViolationEntry) -> None:
            try:
                queue.put_nowait(entry)
            except asyncio.QueueFull:
                # A client this far behind is dropped (it reconnects and reloads the list).
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(b"retry: 2000\n: connected\n\n")
        self.violations.listeners.append(listen)
        try:
            while True:
                try:
                    entry = await asyncio.wait_for(queue.get(), SSE_HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                if entry is None:
                    break
                await response.write(
                    b"event: violation\nid: "
                    + entry.violation.violation_id.encode()
                    + b"\ndata: "
                    + json_bytes(entry)
                    + b"\n\n"
                )
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self.violations.listeners.remove(listen)
        return response


async def _disposition_request(request: web.Request) -> DispositionRequest:
    try:
        body = await request.read()
        return DispositionRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise ApiProblem(400, _validation_text(exc)) from None


def _view(name: str, method: Literal["get", "post"], handler: Handler) -> type[View]:
    async def call(_view: View, request: web.Request, **match: str) -> web.StreamResponse:
        return await handler(request, **match)

    return type(name, (View,), {method: call})


def _order_fields(query: Mapping[str, str]) -> dict[str, Any]:
    """An order object from query parameters: numbers become numbers, the rest stays text."""
    fields: dict[str, Any] = {
        name: query[name]
        for name in ("account_id", "exchange", "security", "side", "price", "broker", "entered_at")
        if name in query
    }
    fields["order_id"] = query.get("order_id", "dry-run")
    quantity = query.get("quantity", "")
    # str.isdigit also accepts digits int() cannot read ("²"): those stay text, and validation
    # answers 400 instead of the view failing.
    fields["quantity"] = (
        int(quantity) if quantity.isascii() and quantity.isdigit() else quantity or None
    )
    if "entered_at" not in fields:
        now = datetime.now(SHANGHAI)  # wall-clock ok: a dry run asks about "now" unless told
        fields["entered_at"] = now.isoformat()
    if "exemption_clause" in query:
        fields["exemption"] = {
            "clause": query["exemption_clause"],
            "reference": query.get("exemption_reference"),
        }
    return fields


def _validation_text(exc: ValidationError) -> str:
    """The errors of a request model, without echoing the values sent."""
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    ]
    return "invalid parameters: " + "; ".join(parts)


def _json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def _model_response(model: BaseModel, status: int = 200) -> web.Response:
    return _json_response(json_bytes(model), status)


def _error(status: int, message: str) -> web.Response:
    return _model_response(queries.ApiError(error=message, status=status), status)
