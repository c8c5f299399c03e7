"""Scoring and the reports, on outcomes made here (no platform): references score perfectly, perturbed
outputs strictly lower, failures as empty outputs, verification used when the results carry it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from docvl.eval import report
from docvl.eval.manifest import Item
from docvl.eval.metrics import Fact
from docvl.eval.runner import Outcome
from docvl.eval.scoring import score
from docvl.jobs.views import PageResult
from docvl.tasks import TaskKind

TEXT = "# Annual report\n\nRevenue grew by **12 percent** to 4.5 million in 2023."
CODE = "import matplotlib.pyplot as plt\nplt.bar(['a', 'b', 'c'], [12, 30.5, 7])\nplt.show()\n"
HTML = "<!DOCTYPE html><html><body><h1>Shop</h1><p>Open daily</p></body></html>"

ITEMS = [
    Item("ocr-1", "p.png", TaskKind.OCR, reference=TEXT, facts=(Fact("present", text="Annual report"),)),
    Item("chart-1", "c.png", TaskKind.CHART2CODE, reference=CODE),
    Item("web-1", "w.png", TaskKind.WEB2HTML, reference=HTML),
    Item("qa-1", "q.png", TaskKind.QA, question="Growth?", answers=("12 percent", "12%")),
    Item("qa-2", "q.png", TaskKind.QA, question="Revenue?", answers=("4.5",)),
]
REFERENCES = {"ocr-1": TEXT, "chart-1": CODE, "web-1": HTML, "qa-1": "12%", "qa-2": "4.5"}
PERTURBED = {
    "ocr-1": "report Annual\n\nRevenue grew by 21 percent to 5.4 million in 2032.",  # shuffled, wrong numbers
    "chart-1": "import matplotlib.pyplot as plt\nplt.bar(['a', 'b', 'c'], [21, 50.3, 7]\n",  # broken, wrong
    "web-1": HTML[:30],  # truncated
    "qa-1": "21%",
    "qa-2": "5.4",
}


class VerifiedPage(PageResult):
    """A page result carrying per-page verification as a plain object (the scorer reads either)."""

    verification: dict[str, Any] | None = None  # type: ignore[assignment]


def _outcome(item: Item, text: str | None, **page: Any) -> Outcome:
    result = VerifiedPage(page=1, task=item.task, text=text, valid=text is not None, model_id="tiny", **page)
    return Outcome(item, job_id="j-" + item.id, page=result)


def test_references_score_perfectly_and_perturbations_strictly_lower() -> None:
    for item in ITEMS:
        perfect = score(_outcome(item, REFERENCES[item.id]))
        worse = score(_outcome(item, PERTURBED[item.id]))
        for name, value in perfect.items():
            if name == "valid":
                continue
            assert value is not None, (item.id, name)
            better_high = name not in ("cer", "edit_distance")
            assert value == (1.0 if better_high else 0.0), (item.id, name, value)
        changed = {n for n in perfect if perfect[n] != worse[n]}
        assert changed, (item.id, perfect, worse)
        for name in changed:
            lower_is_better = name in ("cer", "edit_distance")
            assert (
                (worse[name] or 0) > (perfect[name] or 0)
                if lower_is_better
                else (worse[name] or 0) < (perfect[name] or 0)
            )


def test_failed_items_score_as_empty_output_and_verification_is_used_when_present() -> None:
    chart = ITEMS[1]
    failed = Outcome(chart, job_id="j", page=VerifiedPage(page=1, task=chart.task, text=None))
    assert score(failed) == {"executed": 0.0, "data_value_recall": 0.0, "valid": 0.0}
    unverified = score(_outcome(chart, CODE))
    assert "executed" not in unverified
    assert "similarity" not in unverified
    verified = score(_outcome(chart, CODE, verification={"executed": True, "similarity": 0.75}))
    assert (verified["executed"], verified["similarity"]) == (1.0, 0.75)
    qa = score(Outcome(ITEMS[3], error="503 unavailable: down"))
    assert qa == {"anls": 0.0, "relaxed_accuracy": 0.0}


def test_the_reports_hold_summaries_worst_items_and_every_score(tmp_path: Path) -> None:
    outcomes = [_outcome(item, REFERENCES[item.id]) for item in ITEMS]
    outcomes[4] = _outcome(ITEMS[4], "5.4")  # one wrong answer
    outcomes[2] = _outcome(ITEMS[2], HTML, verification={"rendered": True, "similarity": 0.5})
    outcomes.append(Outcome(Item("qa-3", "q.png", TaskKind.QA, question="?", answers=("x",)), error="boom"))
    now = datetime.now(UTC)
    run = report.Run(tmp_path, "http://api", now, now, outcomes)
    md, js = report.write(run, tmp_path / "out" / "report.md")
    data = json.loads(js.read_text())
    assert js.name == "report.json"
    assert data["items"] == 6
    assert data["submission_failures"] == 1
    assert data["models"] == [{"model_id": "tiny", "model_revision": None, "prompt_template_version": None}]
    qa = data["tasks"]["qa"]
    assert (qa["items"], qa["succeeded"], qa["submission_failures"]) == (3, 2, 1)
    assert qa["metrics"]["anls"]["mean"] == pytest.approx((1 + 0 + 0) / 3)
    assert qa["metrics"]["relaxed_accuracy"]["median"] == 0.0
    assert [w["id"] for w in qa["worst"]] == ["qa-2", "qa-3", "qa-1"]
    assert data["tasks"]["web2html"]["metrics"]["similarity"] == {"mean": 0.5, "median": 0.5, "n": 1}
    assert data["tasks"]["web2html"]["notes"] == []
    assert data["tasks"]["chart2code"]["notes"][0].startswith("no per-page verification")
    assert data["tasks"]["ocr"]["metrics"]["cer"]["mean"] == 0.0
    assert [r["id"] for r in data["results"]] == [o.item.id for o in outcomes]
    assert data["results"][4]["output"] == "5.4"
    text = md.read_text()
    for heading in ("## ocr", "## chart2code", "## web2html", "## qa", "## Submission failures"):
        assert heading in text
    assert "| anls | 0.333 | 0.000 | 3 |" in text
    assert "items: 3, succeeded: 2" in text
    assert "Worst by anls: `qa-2` (0.000)" in text
    with pytest.raises(ValueError, match=r"ends in \.json"):
        report.write(run, tmp_path / "report.json")
