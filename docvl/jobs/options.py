"""SubmitOptions: what a caller sends with a document (its tasks and options), listed here and nowhere else.

Every way in builds one: the REST API's multipart form and JSON body (services/api/submission.py), the
gRPC mapping (services/gateway/mapping.py), the Python client (docvl.client) and `docvl submit`. So a field
is added, renamed or documented here. The model checks a submission's shape: no field it does not name,
the types, and no text that Postgres cannot store or a caller should not send (NUL and the other control
characters). Intake (docvl.jobs.intake.parse_request) then checks the values against the limits: the tasks,
the question's length, the priority's range, the webhook address, the page ranges, the idempotency key.

This module is light on purpose: the client imports it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError
from pydantic_core import PydanticCustomError

from docvl.errors import InvalidInput
from docvl.tasks import TaskKind

LINE_BREAKS = "\t\n\r"  # allowed where text may run over several lines (the question)
PAGES_HELP = "Only these pages, e.g. 1-3,7,12- (from 1; 12- runs to the end); default: every page."
PASSWORD_HELP = (
    "An encrypted PDF's password: used once to decrypt it at submission, never stored or returned."
)


def control_character(text: str, allowed: str = "", *, trimmed: bool = True) -> str | None:
    """The first character of `text` that Postgres cannot store or a caller should not send, described
    (NUL and every other control character but those in `allowed`, and unpaired surrogates); None when
    there is none. With `trimmed`, the whitespace around the text is not looked at: it is trimmed where
    the text is used."""
    start = len(text) - len(text.lstrip()) if trimmed else 0
    for at, char in enumerate(text.strip() if trimmed else text, start + 1):
        kind = unicodedata.category(char)
        if kind == "Cs" or (kind == "Cc" and char not in allowed):
            what = "an unpaired surrogate" if kind == "Cs" else "a control character"
            return f"{what} (U+{ord(char):04X}, character {at})"
    return None


def _text(*, line_breaks: bool = False, trimmed: bool = True) -> AfterValidator:
    """Refuses text holding a control character (tab, line feed and carriage return too, unless
    `line_breaks`); with `trimmed` (the text is trimmed where it is used), the whitespace around it is
    not looked at. The text itself is never part of the message (it may be a password)."""
    allowed = LINE_BREAKS if line_breaks else ""
    rule = "only tab, line feed and carriage return may be used in it" if line_breaks else "it may hold none"

    def check(value: str | SecretStr | None) -> str | SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        found = control_character(text, allowed, trimmed=trimmed)
        if found is not None:
            raise PydanticCustomError(
                "control_character", "holds {found}: {rule}", {"found": found, "rule": rule}
            )
        return value

    return AfterValidator(check)


def _blank_is_unset(value: object) -> object:
    """A number sent as text (a form field) may be blank: not given. Other text is parsed as usual."""
    return None if isinstance(value, str) and not value.strip() else value


class SubmitOptions(BaseModel):
    """A submission's tasks and options, without its document."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # Over REST these travel as headers (field -> header), not in the body.
    HEADERS: ClassVar[dict[str, str]] = {"idempotency_key": "Idempotency-Key"}

    tasks: list[str] = Field(
        description="ocr, chart2code, web2html or qa; at least one.",
        json_schema_extra={"items": {"type": "string", "enum": [t.value for t in TaskKind]}, "minItems": 1},
    )
    question: Annotated[str | None, _text(line_breaks=True)] = Field(
        None, description="Required with the qa task."
    )
    priority: Annotated[int | None, BeforeValidator(_blank_is_unset)] = Field(
        None, description="0 (lowest) to 9 (highest); default 5."
    )
    webhook_url: Annotated[str | None, _text()] = Field(
        None, description="POSTed to (signed) when the job ends."
    )
    # Checked by intake, more strictly than any text (a few ASCII characters).
    idempotency_key: str | None = Field(None, description="The same key and request return the first job.")
    pages: Annotated[str | None, _text()] = Field(None, description=PAGES_HELP, examples=["1-3,7,12-"])
    reuse: bool | None = Field(
        None,
        description="false: compute every page again, even where an earlier job's result for the same page, "
        "task, question and model could be reused; default true.",
    )
    dry_run: bool | None = Field(
        None,
        description="true: answer 200 with a quote (pages, page tasks, tokens, queue ahead, expected start "
        "and finish, GPU-seconds, price) and store nothing; the document is checked as a submission's is.",
    )
    password: Annotated[SecretStr | None, _text(trimmed=False)] = Field(
        None, description=PASSWORD_HELP, json_schema_extra={"writeOnly": True}
    )

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> SubmitOptions:
        """The options in `fields`; InvalidInput naming each field that is not one, or not as it must be."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise InvalidInput(problems(exc, list(cls.model_fields), "option")) from exc

    def given(self) -> dict[str, Any]:
        """The options set (None is not set), the password revealed: what a client sends."""
        return {
            name: value.get_secret_value() if isinstance(value, SecretStr) else value
            for name, value in self
            if value is not None
        }


def problems(exc: ValidationError, accepted: Sequence[str], noun: str = "field", also: str = "") -> str:
    """What is wrong, field by field: the unknown fields first (with the accepted ones, and `also`), then
    the others."""
    unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden" and e["loc"]]
    found = [
        f"{_names(['.'.join(str(part) for part in e['loc'])]) if e['loc'] else 'the body'}: {e['msg']}"
        for e in exc.errors()
        if e["type"] != "extra_forbidden"
    ]
    if unknown:
        found.insert(0, unknown_fields(unknown, accepted, noun, also))
    return "; ".join(found)


def unknown_fields(
    unknown: Iterable[str], accepted: Sequence[str], noun: str = "field", also: str = ""
) -> str:
    """`unknown fields `a`, `b`: the accepted fields are ...`, then `also` (e.g. " (and a header)")."""
    names = list(dict.fromkeys(unknown))
    plural = "s" if len(names) > 1 else ""
    return f"unknown {noun}{plural} {_names(names)}: the accepted {noun}s are {_names(accepted)}{also}"


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"`{name[:60]}`" for name in names)
