"""A typed Python client of the docvl REST API.

```python
from docvl.client import Client

with Client() as docvl:  # DOCVL_API_URL (default http://127.0.0.1:8000) and DOCVL_API_KEY
    job = docvl.submit("invoice.pdf", ["ocr", "qa"], question="What is the total?")
    job = docvl.wait(job.id, on_update=lambda j: print(j.status, j.progress))
    for name in (f.name for files in docvl.result(job.id).outputs.values() for f in files):
        docvl.download(job.id, name, Path("out"))
```

Every failure raises `ApiError` (a `DocvlError`) with the HTTP status, the API's stable error `code` and
its message; a server that cannot be reached gives code `unavailable` and status 0.
"""

from __future__ import annotations

from docvl.client.client import DEFAULT_URL, Client, Document, JobId
from docvl.client.errors import ApiError, WaitTimeout
from docvl.jobs.options import SubmitOptions

__all__ = ["DEFAULT_URL", "ApiError", "Client", "Document", "JobId", "SubmitOptions", "WaitTimeout"]
