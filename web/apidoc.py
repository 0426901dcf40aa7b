"""What each route takes and answers, declared next to its handler for ``/openapi.json``.

A handler is decorated with :func:`documented`: its summary, query parameters, request
body and answers, as JSON Schema built from the very constants the handler checks with
(limits, the enums of statuses, sorts, queues and qualities), so the schema cannot drift
from the code without a fuzz run (``make fuzz``) or a test noticing. What every route of
a kind shares — the credential and its refusals (401, 403, 429), the body cap (413), a
store that cannot answer (503) — is added by :mod:`web.openapi` from the middleware's
own rules, not declared here. Schemas are OpenAPI 3.1 (JSON Schema 2020-12).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from db.jobs import PUBLIC_FIELDS, TIME_FIELDS
from db.models import JobKind, JobStatus
from db.queues import Queue

Schema = dict[str, Any]
Handler = TypeVar("Handler", bound=Callable[..., Any])

ANY: Schema = {}
INT: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
STRING: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
UUID: Schema = {"type": "string", "format": "uuid"}
OBJECT: Schema = {"type": "object"}


def nullable(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def choice(values: Iterable[object]) -> Schema:
    return {"type": "string", "enum": [str(value) for value in values]}


def text(min_length: int = 0, max_length: int | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "string", "minLength": min_length, **extra}
    if max_length is not None:
        schema["maxLength"] = max_length
    return schema


def integer(minimum: int | None = None, maximum: int | None = None) -> Schema:
    schema: Schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def obj(
    properties: Mapping[str, Schema],
    required: Iterable[str] | None = None,
    *,
    closed: bool = False,
) -> Schema:
    """An object; every property is required unless ``required`` says otherwise, and
    ``closed`` refuses any other (what a handler refuses too)."""
    schema: Schema = {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties if required is None else required),
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


def page_of(item: Schema) -> Schema:
    """A list page: ``{"items": [...], "next": cursor-or-null}``."""
    return obj({"items": array(item), "next": nullable(STRING)})


def query(name: str, schema: Schema, description: str = "") -> Schema:
    parameter: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Answer:
    """One answer of an operation: JSON of ``schema``, or a body of ``media_type``
    (None: no body), with the headers it carries."""

    description: str
    schema: Schema | None = None
    media_type: str | None = "application/json"
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """A route's contract. ``errors``: the statuses of the JSON error the handler
    itself may answer (the middleware's are added by :mod:`web.openapi`)."""

    summary: str
    answers: Mapping[int, Answer]
    errors: tuple[int, ...] = ()
    parameters: tuple[Schema, ...] = ()
    body: Schema | None = None
    body_types: tuple[str, ...] = ("application/json",)
    body_required: bool = True
    description: str = ""
    path_params: Mapping[str, Schema] = field(default_factory=dict)


def documented(
    summary: str,
    answers: Mapping[int, Answer | Schema],
    *,
    errors: Iterable[int] = (),
    parameters: Iterable[Schema] = (),
    body: Schema | None = None,
    body_types: Iterable[str] = ("application/json",),
    body_required: bool = True,
    description: str = "",
    path_params: Mapping[str, Schema] | None = None,
) -> Callable[[Handler], Handler]:
    """Attach the route's :class:`Operation` to its handler (a schema as an answer is
    JSON of that schema)."""
    operation = Operation(
        summary=summary,
        answers={
            code: answer if isinstance(answer, Answer) else Answer("", answer)
            for code, answer in answers.items()
        },
        errors=tuple(errors),
        parameters=tuple(parameters),
        body=body,
        body_types=tuple(body_types),
        body_required=body_required,
        description=description,
        path_params=dict(path_params or {}),
    )

    def attach(handler: Handler) -> Handler:
        handler.__openapi__ = operation  # type: ignore[attr-defined]
        return handler

    return attach


def operation_of(handler: object) -> Operation | None:
    found = getattr(handler, "__openapi__", None)
    return found if isinstance(found, Operation) else None


# The shapes several routes answer with: components of the document.
ERROR = obj(
    {
        "error": obj(
            {"code": STRING, "message": STRING, "field": STRING},
            required=["code", "message"],
        )
    }
)
_JOB_FIELDS: dict[str, Schema] = {
    "id": UUID,
    "kind": choice(JobKind),
    "status": choice(JobStatus),
    "queue": nullable(choice(Queue)),
    "params": nullable(OBJECT),
    "result": ANY,
    "error": nullable(OBJECT),
    "progress": nullable({"type": "number", "minimum": 0, "maximum": 1}),
    "stage": nullable(STRING),
    "message": nullable(STRING),
    "attempts": INT,
    "max_attempts": INT,
    "parent_id": nullable(UUID),
    "retry_of": nullable(UUID),
    **dict.fromkeys(TIME_FIELDS, nullable(TIME)),
}
assert set(_JOB_FIELDS) == {*PUBLIC_FIELDS, *TIME_FIELDS}, "a job field is not described"
JOB = obj(_JOB_FIELDS)
SCHEMAS: dict[str, Schema] = {"Error": ERROR, "Job": JOB}
