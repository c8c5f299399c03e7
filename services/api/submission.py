"""The body of POST /v1/jobs: a multipart form (the document in `file`) or JSON (a document in storage,
`source`), each read into SubmitOptions (docvl.jobs.options), the one list of a submission's fields, with
the fields that travel as headers (the Idempotency-Key). The OpenAPI description of the bodies and headers
is made from it too. A field that is not one of them is refused by name, never ignored."""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Field, ValidationError
from starlette.datastructures import FormData, UploadFile

from docvl.errors import InvalidInput
from docvl.jobs.options import SubmitOptions, problems, unknown_fields

FILE = "file"
SOURCE = "source"
HEADERS = SubmitOptions.HEADERS  # field -> its header
BODY_FIELDS = [name for name in SubmitOptions.model_fields if name not in HEADERS]
FORM_FIELDS = [FILE, *BODY_FIELDS]
JSON_FIELDS = [SOURCE, *BODY_FIELDS]
DOCUMENT_HELP = "A PDF or a PNG/JPEG/TIFF/WebP image."
ALSO = "".join(f" (and the {header} header)" for header in HEADERS.values())


class SubmitFromStorage(SubmitOptions):
    """A job on a document already in object storage."""

    source: str = Field(
        description="The document, as s3://bucket/key.", examples=["s3://docvl/incoming/a.pdf"]
    )


def from_form(form: FormData, headers: Mapping[str, str]) -> tuple[UploadFile, SubmitOptions]:
    """The uploaded document and the options of a multipart submission and its headers. A field sent
    twice is refused, but a list's (tasks: repeated, or comma-separated)."""
    upload = form.get(FILE)
    if not isinstance(upload, UploadFile):
        raise InvalidInput(f"send the document as the multipart file field `{FILE}`")
    _refuse_unknown(form.keys(), FORM_FIELDS)
    fields = _from_headers(headers)
    for name in BODY_FIELDS:
        values = [v for v in form.getlist(name) if isinstance(v, str)]
        if _is_list(name):
            fields[name] = [part for value in values for part in value.split(",") if part.strip()]
        elif len(values) > 1:
            raise InvalidInput(f"send `{name}` once")
        elif values:
            fields[name] = values[0]
    return upload, SubmitOptions.of(fields)


def from_json(raw: bytes, headers: Mapping[str, str]) -> tuple[str, SubmitOptions]:
    """The storage URI and the options of a JSON submission and its headers."""
    try:
        body = SubmitFromStorage.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidInput(problems(exc, JSON_FIELDS, also=ALSO)) from exc
    _refuse_unknown(body.model_fields_set, JSON_FIELDS)  # a header's field, which the model has
    given = {name: getattr(body, name) for name in body.model_fields_set if name != SOURCE}
    return body.source, SubmitOptions.of(given | _from_headers(headers))


def _from_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    return {name: headers[header] for name, header in HEADERS.items() if header in headers}


def _refuse_unknown(names: Iterable[str], accepted: list[str]) -> None:
    """InvalidInput naming each field that is not accepted (a header's field: saying to send the header)."""
    given = list(dict.fromkeys(names))
    unknown = [name for name in given if name not in accepted and name not in HEADERS]
    found = [unknown_fields(unknown, accepted, also=ALSO)] if unknown else []
    found += [
        f"`{name}` is not sent in the body: send it as the {HEADERS[name]} header"
        for name in given
        if name in HEADERS
    ]
    if found:
        raise InvalidInput("; ".join(found))


def _is_list(name: str) -> bool:
    return typing.get_origin(SubmitOptions.model_fields[name].annotation) is list


def _form_field(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON-schema property as a form field: never null, without title or default."""
    variants = [v for v in schema.get("anyOf", []) if v.get("type") != "null"]
    shown = {key: value for key, value in schema.items() if key not in ("anyOf", "title", "default")}
    return {**(variants[0] if variants else {}), **shown}


def _openapi() -> dict[str, Any]:
    """The request body (form or JSON) and the headers of POST /v1/jobs, from the models."""
    form = SubmitOptions.model_json_schema()
    storage = SubmitFromStorage.model_json_schema()
    for schema in (form, storage):
        for name in HEADERS:
            del schema["properties"][name]
    storage["properties"] = {SOURCE: storage["properties"].pop(SOURCE), **storage["properties"]}
    storage["required"] = [SOURCE, *(name for name in storage["required"] if name != SOURCE)]
    form = {
        "type": "object",
        "required": [FILE, *form["required"]],
        "properties": {
            FILE: {
                "type": "string",
                "format": "binary",
                "description": "A PDF or a PNG/JPEG/TIFF/WebP image.",
            },
            **{name: _form_field(value) for name, value in form["properties"].items()},
        },
        "additionalProperties": False,
    }
    fields = SubmitOptions.model_fields
    return {
        "parameters": [
            {
                "name": header,
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": fields[name].description,
            }
            for name, header in HEADERS.items()
        ],
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": form}, "application/json": {"schema": storage}},
        },
    }


SUBMIT_OPENAPI = _openapi()
