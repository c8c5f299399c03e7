"""SubmitOptions, the one list of a submission's fields, as each way in reads it (the REST form and JSON
body, the gRPC message, the client, the CLI), and intake's checks through it. No server: the slow tests
(test_api.py, test_gateway.py, test_client_cli.py) submit for real."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
import typer
from starlette.datastructures import FormData, Headers, UploadFile
from typer.testing import CliRunner

from docvl.client import ApiError, Client, SubmitOptions
from docvl.errors import InvalidInput
from docvl.jobs.intake import Limits, parse_request
from docvl.tasks import TaskKind
from docvl.v1 import jobs_pb2 as pb
from services.api import submission
from services.gateway.mapping import options_from_pb

LIMITS = Limits(max_upload_bytes=1024, max_pages=10)


def test_every_option_is_a_field_of_the_grpc_message_and_of_the_rest_bodies() -> None:
    message = pb.SubmitJobRequest.DESCRIPTOR.fields_by_name
    assert set(SubmitOptions.model_fields) <= set(message)
    openapi = submission.SUBMIT_OPENAPI
    body = openapi["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]
    storage = body["application/json"]["schema"]
    in_body = set(SubmitOptions.model_fields) - set(SubmitOptions.HEADERS)
    assert set(form["properties"]) == {"file", *in_body}
    assert set(storage["properties"]) == {"source", *in_body}
    assert form["required"] == ["file", "tasks"]
    assert storage["required"] == ["source", "tasks"]
    assert form["additionalProperties"] is storage["additionalProperties"] is False
    assert [p["name"] for p in openapi["parameters"]] == ["Idempotency-Key"]
    assert form["properties"]["tasks"]["items"]["enum"] == [t.value for t in TaskKind]
    assert form["properties"]["password"] == {
        "type": "string",
        "format": "password",
        "writeOnly": True,
        "description": SubmitOptions.model_fields["password"].description,
    }


def test_a_grpc_message_gives_the_options_it_sets() -> None:
    bare = options_from_pb(pb.SubmitJobRequest(content=b"x", tasks=["ocr"]))
    assert bare == SubmitOptions(tasks=["ocr"])
    full = pb.SubmitJobRequest(
        source_uri="s3://b/k",
        tasks=["qa", "ocr"],
        question="",  # set, though empty: intake says the qa task needs a question
        priority=0,
        webhook_url="https://example.com/hook",
        idempotency_key="k-1",
        pages="1-2",
        password="pw",
    )
    options = options_from_pb(full)
    assert options.given() == {
        "tasks": ["qa", "ocr"],
        "question": "",
        "priority": 0,
        "webhook_url": "https://example.com/hook",
        "idempotency_key": "k-1",
        "pages": "1-2",
        "password": "pw",
    }
    with pytest.raises(InvalidInput, match="the qa task needs a question"):
        parse_request(LIMITS, options)


def form(*items: tuple[str, str | UploadFile]) -> FormData:
    return FormData([("file", UploadFile(file=None, filename="a.pdf")), *items])  # type: ignore[arg-type]


def test_the_form_is_read_into_the_options() -> None:
    upload, options = submission.from_form(
        form(("tasks", "ocr,qa"), ("tasks", "chart2code"), ("question", "Why?"), ("priority", " 7 ")),
        Headers({"idempotency-key": "k-2"}),
    )
    assert upload.filename == "a.pdf"
    assert options == SubmitOptions(
        tasks=["ocr", "qa", "chart2code"], question="Why?", priority=7, idempotency_key="k-2"
    )
    blank = submission.from_form(form(("tasks", "ocr"), ("priority", ""), ("pages", "")), Headers())[1]
    assert parse_request(LIMITS, blank).priority == 5
    assert parse_request(LIMITS, blank).pages is None
    with pytest.raises(InvalidInput, match="send `question` once"):
        submission.from_form(form(("tasks", "qa"), ("question", "a"), ("question", "b")), Headers())
    with pytest.raises(InvalidInput, match="`priority`: Input should be a valid integer"):
        submission.from_form(form(("tasks", "ocr"), ("priority", "high")), Headers())
    with pytest.raises(InvalidInput, match="multipart file field `file`"):
        submission.from_form(FormData([("tasks", "ocr")]), Headers())


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"dryrun": "true"}, ["unknown field `dryrun`", "the accepted fields are `file`, `tasks`"]),
        ({"prority": "9", "Tasks": "qa"}, ["unknown fields `prority`, `Tasks`", "Idempotency-Key header"]),
        ({"idempotency_key": "k"}, ["`idempotency_key` is not sent in the body", "Idempotency-Key header"]),
        ({"source": "s3://b/k"}, ["unknown field `source`"]),
    ],
)
def test_unknown_form_fields_are_refused_by_name(fields: dict[str, str], words: list[str]) -> None:
    with pytest.raises(InvalidInput) as refused:
        submission.from_form(form(("tasks", "ocr"), *fields.items()), Headers())
    assert all(word in refused.value.message for word in words), refused.value.message


def test_the_json_body_is_read_into_the_options() -> None:
    body: dict[str, object] = {"source": "s3://b/k", "tasks": ["ocr"], "priority": 3, "password": "pw"}
    source, options = submission.from_json(json.dumps(body).encode(), Headers({"Idempotency-Key": "k-3"}))
    assert source == "s3://b/k"
    assert options.given() == {"tasks": ["ocr"], "priority": 3, "password": "pw", "idempotency_key": "k-3"}
    assert "pw" not in repr(options)
    refusals: list[tuple[dict[str, object], str]] = [
        ({"dryrun": True}, "unknown field `dryrun`: the accepted fields are `source`, `tasks`"),
        ({"idempotency_key": "k"}, "send it as the Idempotency-Key header"),
    ]
    for extra, words in refusals:
        with pytest.raises(InvalidInput, match=words):
            submission.from_json(json.dumps(body | extra).encode(), Headers())
    with pytest.raises(InvalidInput, match="`source`: Field required"):
        submission.from_json(b'{"tasks": ["ocr"]}', Headers())


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("question", "What is\x00 shown?", False),
        ("question", "What is \x1b[1mshown\x7f?", False),
        ("question", "What is\u0085shown?", False),  # a C1 control
        ("question", " Two lines:\r\nwhat is shown,\tand where? \n", True),
        ("webhook_url", "https://example.com/\x00", False),
        ("webhook_url", "https://example.com/a\tb", False),
        ("webhook_url", "https://example.com/hook\n", True),  # around the text: trimmed, as before
        ("pages", "1,\n2", False),
        ("pages", " 1-2 ", True),
        ("password", "pass\x00word", False),
        ("password", "pass\tword", False),
        ("password", "pass word\n", False),  # a password is not trimmed: it is used as it is
        ("password", " pass word ", True),
    ],
)
def test_control_characters_are_refused_naming_the_field(field: str, value: str, allowed: bool) -> None:
    fields = {"tasks": ["qa" if field == "question" else "ocr"], field: value}
    if allowed:
        parse_request(LIMITS, SubmitOptions.of(fields))
        return
    with pytest.raises(InvalidInput) as refused:
        SubmitOptions.of(fields)
    assert refused.value.message.startswith(f"`{field}`: holds a control character (U+")
    assert value.strip() not in refused.value.message


def test_control_characters_in_a_source_or_an_idempotency_key_are_refused() -> None:
    from docvl.jobs.intake import parse_source

    limits = Limits(max_upload_bytes=1024, max_pages=10, source_buckets=("b",))
    with pytest.raises(InvalidInput, match=r"`source` holds a control character \(U\+0000"):
        parse_source("s3://b/a\x00.pdf", limits)
    assert parse_source(" s3://b/a.pdf\n", limits) == ("b", "a.pdf")
    for key in ("k\x00", "k\n", "k\x7f"):
        with pytest.raises(InvalidInput, match="Idempotency-Key must be"):
            parse_request(LIMITS, SubmitOptions(tasks=["ocr"], idempotency_key=key))


def test_intake_keeps_its_fingerprint_and_what_the_job_record_keeps() -> None:
    options = SubmitOptions(
        tasks=["qa", "ocr", "qa"], question=" Why? ", priority=None, webhook_url=" https://example.com/h ",
        pages="3,1-2", password="pw",
    )  # fmt: skip
    request = parse_request(LIMITS, options)
    assert request.tasks == [TaskKind.QA, TaskKind.OCR]
    assert (request.priority, request.password, str(request.pages)) == (5, "pw", "3,1-2")
    assert request.options() == {"question": "Why?", "webhook_url": "https://example.com/h", "pages": "3,1-2"}
    # The same fields, written as before SubmitOptions: an idempotency key given then still replays.
    fields = {
        "tasks": ["ocr", "qa"],
        "question": "Why?",
        "priority": 5,
        "webhook_url": "https://example.com/h",
        "document": "abc",
        "pages": "3,1-2",
    }
    assert (
        request.fingerprint("abc") == hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    )


def job(status: str = "queued") -> dict[str, Any]:
    now = "2026-01-01T00:00:00Z"
    return {
        "id": "00000000-0000-0000-0000-000000000001",
        "status": status,
        "tasks": ["ocr"],
        "priority": 5,
        "progress": {"pages_total": 0, "pages_done": 0, "pages_failed": 0},
        "error": None,
        "created_at": now,
        "updated_at": now,
    }


def test_the_client_sends_the_options_it_checked() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(202, json=job())

    with Client("http://docvl.test", "k", transport=httpx.MockTransport(handler)) as client:
        client.submit(b"%PDF-1.7", [TaskKind.OCR, "qa"], question="Why?", priority=7, idempotency_key="k-4")
        form_body = sent[-1].content.decode()
        assert sent[-1].headers["Idempotency-Key"] == "k-4"
        assert 'name="idempotency_key"' not in form_body
        assert form_body.count('name="tasks"') == 2
        assert 'name="priority"\r\n\r\n7\r\n' in form_body
        options = SubmitOptions(tasks=["ocr"], pages="2-", password="pw", idempotency_key="k-5")
        client.submit_source("s3://b/k", options)
        assert json.loads(sent[-1].content) == {
            "source": "s3://b/k",
            "tasks": ["ocr"],
            "pages": "2-",
            "password": "pw",
        }
        assert sent[-1].headers["Idempotency-Key"] == "k-5"
        count = len(sent)
        for bad, words in [
            ({"questoin": "Why?"}, "unknown option `questoin`"),
            ({"webhook_url": "https://example.com/\x00"}, "`webhook_url`: holds a control character"),
        ]:
            with pytest.raises(ApiError) as refused:
                client.submit(b"%PDF-1.7", ["ocr"], **bad)
            assert (refused.value.status, refused.value.code) == (0, "invalid_input")
            assert words in refused.value.message
        assert len(sent) == count, "nothing is sent for options the client refuses"


def test_the_cli_refuses_options_the_model_refuses(tmp_path: Any) -> None:
    from docvl.cli import jobs

    app = typer.Typer()
    jobs.register(app)
    document = tmp_path / "a.pdf"
    document.write_bytes(b"%PDF-1.7")
    result = CliRunner().invoke(
        app,
        ["submit", str(document), "--task", "ocr", "--webhook-url", "https://example.com/\x07"],
        env={"DOCVL_API_URL": "http://127.0.0.1:9", "DOCVL_API_KEY": "k"},
    )
    assert result.exit_code == 2, result.output
    assert "error (invalid_input): `webhook_url`: holds a control character (U+0007" in result.output
