"""Jobs written straight into the record for the console's tests: a finished job with one page and the
given text per task, as the page tasks would have stored it (docvl/db/jobs.py)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from PIL import Image

from docvl.db import jobs, page_results
from docvl.job_status import JobStatus
from docvl.storage.base import page_key
from docvl.tasks import TaskKind
from tests.support.platform import FrontDoorPlatform

MARKUP = """<script>window.__pwned = "script"</script>
<img src="http://evil.invalid/img.png" onerror="window.__pwned = 'img'; alert('img')">
<svg onload="window.__pwned = 'svg'"><circle r="5"/></svg>
<iframe src="http://evil.invalid/frame"></iframe>
<object data="http://evil.invalid/object"></object>
<style>@import url(http://evil.invalid/import.css); body { background: url(http://evil.invalid/bg) }</style>
<link rel="stylesheet" href="http://evil.invalid/sheet.css">
<div style="background-image: url(http://evil.invalid/inline)">styled</div>
<meta http-equiv="refresh" content="0; url=http://evil.invalid/refresh">
<base href="http://evil.invalid/">
<a href="javascript:window.__pwned = 'a'">raw link</a>
<form action="http://evil.invalid/form"><button>go</button></form>"""

HOSTILE_MARKDOWN = f"""# Hostile heading

{MARKUP}

[markdown link](javascript:window.__pwned='markdown')
[data link](data:text/html,<script>alert(1)</script>)

![tracker](http://evil.invalid/pixel.png) [relative](/v1/jobs) [fine](https://example.org/)
"""

HOSTILE_CODE = f'''import matplotlib.pyplot as plt
# </code></pre><script>window.__pwned = "code"</script><img src=x onerror="window.__pwned='code'">
label = """{MARKUP}"""
plt.title(label)
'''

HOSTILE_PAGE = f"""<!doctype html>
<html><head><title>Hostile page</title>{MARKUP}
<script src="http://evil.invalid/remote.js"></script></head>
<body onload="window.__pwned = 'onload'"><h1>Hostile page</h1>{MARKUP}
<p>Text that stays.</p></body></html>"""

HOSTILE = {
    TaskKind.OCR: HOSTILE_MARKDOWN,
    TaskKind.CHART2CODE: HOSTILE_CODE,
    TaskKind.WEB2HTML: HOSTILE_PAGE,
    TaskKind.QA: HOSTILE_MARKDOWN,
}


def stored_job(
    frontdoor: FrontDoorPlatform,
    owner: str,
    image: Path,
    outputs: dict[TaskKind, str],
    *,
    question: str | None = None,
    running: bool = False,
) -> uuid.UUID:
    """A succeeded job of `owner` with one page (`image`) and `outputs[task]` as each task's result; or,
    `running`, one still running with a second page that has no results yet."""
    data = image.read_bytes()
    with Image.open(image) as opened:
        width, height = opened.size
    with frontdoor.db.transaction() as s:
        document = jobs.get_or_create_document(
            s,
            sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),  # a document of its own
            size_bytes=len(data),
            media_type="image/png",
            object_key=f"inputs/{uuid.uuid4().hex}",
        )
        options = {"question": question} if question else {}
        job, _ = jobs.create_job(
            s, jobs.NewJob(owner=owner, document_id=document.id, tasks=list(outputs), options=options)
        )
        key = page_key(job.id, 0)
        frontdoor.store.put(key, data, content_type="image/png")
        jobs.transition(s, job.id, JobStatus.RUNNING)
        pages = [
            page_results.NewPage(index, key, width, height, len(data)) for index in range(2 if running else 1)
        ]
        page_results.add_pages(s, job.id, pages)
        for task, text in outputs.items():
            page_results.record_result(
                s,
                page_results.NewResult(
                    job_id=job.id,
                    page_index=0,
                    task=task,
                    output_text=text,
                    output_valid=True,
                    generated_tokens=len(text.split()),
                    model_id="deepseek-ai/deepseek-vl-1.3b-chat",
                    model_revision="written-by-test",
                    prompt_template_version="v1",
                ),
            )
        if not running:
            jobs.transition(s, job.id, JobStatus.SUCCEEDED)
        return job.id


DEMO_MARKDOWN = """# Quarterly Report

Line 1: revenue grew in every region; costs stayed flat.

Line 2: revenue grew in every region; costs stayed flat.

Line 3: revenue grew in every region; costs stayed flat.

| Region | Revenue |
|:-------|--------:|
| North  | 1,200   |
| South  | 950     |
| West   | 700     |
"""

DEMO_CODE = """import matplotlib.pyplot as plt

years = ["2021", "2022", "2023", "2024"]
sales = [120, 200, 260, 310]

fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.bar(years, sales, color="#1f77b4", width=0.6)
ax.set_title("Sales by year")
ax.spines[["top", "right"]].set_visible(False)
ax.set_yticks([])
plt.show()
"""

DEMO_PAGE = """<!doctype html>
<html><head><title>Acme Docs</title>
<style>
body { margin: 0; font-family: sans-serif; background: #f4f4f4; }
nav { display: flex; justify-content: space-between; align-items: center; background: #212529;
      color: #fff; padding: 0 24px; height: 64px; }
nav ul { display: flex; gap: 40px; list-style: none; margin: 0; padding: 0; }
nav a { color: #fff; text-decoration: none; }
main { padding: 24px 60px; }
h1 { font-weight: 400; font-size: 40px; }
.cta { background: #0d6efd; color: #fff; border: 0; padding: 14px 30px; font-size: 18px; }
.cards { display: flex; gap: 30px; margin-top: 56px; }
.card { flex: 1; background: #fff; border: 1px solid #ccc; height: 260px; padding: 0 20px; }
.card h2 { font-weight: 400; font-size: 22px; }
</style></head>
<body>
<header><nav><span>Acme Docs</span>
<ul><li><a href="https://acme.example/">Home</a></li><li><a href="https://acme.example/guides">Guides</a></li>
<li><a href="https://acme.example/api">API</a></li><li><a href="https://acme.example/pricing">Pricing</a></li></ul>
</nav></header>
<main><h1>Turn documents into data</h1><button class="cta">Get started</button>
<div class="cards"><section class="card"><h2>Fast</h2></section><section class="card"><h2>Accurate</h2>
</section><section class="card"><h2>Open</h2></section></div>
</main></body></html>"""

DEMO_ANSWER = "The North region, with **1,200** in revenue."
