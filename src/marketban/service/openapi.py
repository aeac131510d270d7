"""The API's OpenAPI 3.1 description (``/api/openapi.json``), built from the same pydantic models.

The paths are listed here by hand; every schema comes from the models the handlers return, so the
description cannot drift from what is served without the test of this module failing.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from marketban.domain.models import AccountLink
from marketban.service.monitor import Disposition, DispositionRequest, ViolationEntry
from marketban.service.queries import (
    AccountQuery,
    AccountView,
    ApiError,
    BansQuery,
    CheckResult,
    Page,
    RegisterDetail,
    RegisterEntry,
    Stats,
    StatsQuery,
    ViolationsQuery,
)

_REF: Final = "#/components/schemas/{model}"
_CHECK_PARAMS: Final = (
    ("account_id", True, "the account that would send the order"),
    ("exchange", True, "XSHG, XSHE, BJSE or NEEQ"),
    ("security", True, "security code"),
    ("side", True, "buy or sell"),
    ("quantity", True, "a positive integer"),
    ("price", True, "a positive decimal"),
    ("broker", True, "the broker's code"),
    ("entered_at", False, "ISO 8601 with an offset; default now"),
    ("order_id", False, "default dry-run; an id already decided answers 409"),
    ("exemption_clause", False, "an Art. 6 clause the order claims, e.g. 6.1"),
    ("exemption_reference", False, "the evidence_id the claim rests on"),
)


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _ok(ref: str, description: str, status: str = "200") -> dict[str, Any]:
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=ref)}}},
        }
    }


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "bad parameters",
        401: "no bearer token",
        403: "wrong token, or writes disabled",
        404: "not found",
        409: "order_id already decided (check) or not a suspicion (confirm, dismiss)",
        503: "not ready, or the owning worker did not answer",
    }
    schema = {"$ref": _REF.format(model="ApiError")}
    return {
        str(c): {"description": texts[c], "content": {"application/json": {"schema": schema}}}
        for c in codes
    }


def openapi() -> dict[str, Any]:
    """The OpenAPI document of every ``/api`` endpoint."""
    models: list[type[BaseModel]] = [
        AccountLink,
        AccountView,
        ApiError,
        CheckResult,
        Disposition,
        DispositionRequest,
        Page[RegisterEntry],
        Page[ViolationEntry],
        RegisterDetail,
        Stats,
        ViolationEntry,
    ]
    _, defs = models_json_schema([(m, "serialization") for m in models], ref_template=_REF)
    schemas = defs["$defs"]
    check_params = [
        {"name": n, "in": "query", "required": r, "description": d, "schema": {"type": "string"}}
        for n, r, d in _CHECK_PARAMS
    ]
    paths: dict[str, Any] = {
        "/api/accounts/{account_id}": {
            "get": {
                "summary": "The account's person, measures now and later, remaining quotas",
                "parameters": [_path_param("account_id"), *_query_params(AccountQuery)],
                "responses": {**_ok("AccountView", "the account"), **_errors(400, 404, 503)},
            }
        },
        "/api/check": {
            "get": {
                "summary": "The decision an order would get now (dry run: nothing is reserved)",
                "parameters": check_params,
                "responses": {**_ok("CheckResult", "the decision"), **_errors(400, 409, 503)},
            }
        },
        "/api/bans": {
            "get": {
                "summary": "The public ban register (Art. 13), newest served first",
                "parameters": _query_params(BansQuery),
                "responses": {**_ok("Page_RegisterEntry_", "a page"), **_errors(400, 503)},
            }
        },
        "/api/bans/{decision_id}": {
            "get": {
                "summary": "One decision with its version history",
                "parameters": [_path_param("decision_id")],
                "responses": {**_ok("RegisterDetail", "the decision"), **_errors(404, 503)},
            }
        },
        "/api/violations": {
            "get": {
                "summary": "Violations, newest first, with their dispositions",
                "parameters": _query_params(ViolationsQuery),
                "responses": {**_ok("Page_ViolationEntry_", "a page"), **_errors(400)},
            }
        },
        "/api/violations/stream": {
            "get": {
                "summary": "Server-sent events: event 'violation', data a ViolationEntry",
                "responses": {
                    "200": {
                        "description": "an endless event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/api/violations/{violation_id}": {
            "get": {
                "summary": "One violation",
                "parameters": [_path_param("violation_id")],
                "responses": {**_ok("ViolationEntry", "the violation"), **_errors(404)},
            }
        },
        **{
            f"/api/violations/{{violation_id}}/{action}": _disposition_path(summary, conflict)
            for action, summary, conflict in _DISPOSITIONS
        },
        "/api/accounts/{account_id}/controllers/{person_id}/revoke": _disposition_path(
            "Revoke a controlled link (writes the accounts record with revoked: true; the note "
            "is its reference)",
            conflict=False,
            params=("account_id", "person_id"),
            answer="AccountLink",
        ),
        "/api/stats": {
            "get": {
                "summary": "Decisions by verdict and violations by kind, per minute",
                "parameters": _query_params(StatsQuery),
                "responses": {**_ok("Stats", "the counts"), **_errors(400)},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "marketban query API",
            "version": "1",
            "description": "Reads answer from the worker's tables and views; see README.md.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_DISPOSITIONS: Final = (
    ("acknowledge", "Acknowledge a violation (recorded on violation-dispositions)", False),
    (
        "confirm",
        (
            "R8: confirm that the suspected person controls the account; writes the accounts "
            "record {kind: controlled, reference: violation_id, confirmed_by: the token's "
            "analyst} and a disposition; 409 for a violation that is not a suspicion"
        ),
        True,
    ),
    ("dismiss", "R8: dismiss a suspicion (a disposition); 409 for other violations", True),
)


def _disposition_path(
    summary: str,
    conflict: bool,
    params: tuple[str, ...] = ("violation_id",),
    answer: str = "Disposition",
) -> dict[str, Any]:
    """An analyst's write: bearer token, an optional note, 202 once Kafka has the record."""
    return {
        "post": {
            "summary": summary + ". Recorded as done by the analyst whose token is used.",
            "security": [{"bearer": []}],
            "parameters": [_path_param(p) for p in params],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {"$ref": _REF.format(model="DispositionRequest")}
                    }
                },
            },
            "responses": {
                **_ok(answer, "recorded", status="202"),
                **_errors(400, 401, 403, 404, *((409,) if conflict else ())),
            },
        }
    }
