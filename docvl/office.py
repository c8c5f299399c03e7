"""Office documents — Word, PowerPoint, Excel, their OpenDocument counterparts and RTF — recognised by their
content and converted to PDF by headless LibreOffice, which then goes through the same pipeline.

The files are untrusted. Each conversion is its own LibreOffice process in a network namespace of its own
(no interfaces: nothing can be fetched), with a fresh private profile in which macros are off, no
environment but PATH/HOME/LANG, limits on memory, CPU time, file size and open files, a wall-clock timeout
that kills its whole process group, and at most `concurrency` at a time in this process. A file that hangs
or crashes LibreOffice fails its job with `conversion_failed`; the next conversion starts afresh.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from docvl.documents import CorruptDocument, DocumentError, DocumentTooLarge, UnsupportedDocument
from docvl.settings import CoreSettings

OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .doc, .xls, .ppt
ZIP = b"PK\x03\x04"  # OOXML and OpenDocument
RTF = b"{\\rtf"
PR_SET_PDEATHSIG = 1  # prctl(2)

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODT = "application/vnd.oasis.opendocument.text"
ODP = "application/vnd.oasis.opendocument.presentation"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
DOC = "application/msword"
PPT = "application/vnd.ms-powerpoint"
XLS = "application/vnd.ms-excel"
RTF_TYPE = "application/rtf"
EXTENSIONS = {
    DOCX: "docx", PPTX: "pptx", XLSX: "xlsx", ODT: "odt", ODP: "odp", ODS: "ods",
    DOC: "doc", PPT: "ppt", XLS: "xls", RTF_TYPE: "rtf",
}  # fmt: skip
_OOXML_PARTS = {"word/document.xml": DOCX, "ppt/presentation.xml": PPTX, "xl/workbook.xml": XLSX}
_OPENDOCUMENT = {ODT, ODP, ODS}
# The streams that name a legacy Office file's kind, as they appear (UTF-16) in its directory.
_OLE_STREAMS = {"WordDocument": DOC, "PowerPoint Document": PPT, "Workbook": XLS, "Book": XLS}
MAX_ZIP_ENTRIES = 10_000
MAX_RATIO = 200  # uncompressed / compressed, over the whole archive, beyond which it is a zip bomb
OFFICE_KINDS = "Word, PowerPoint, Excel (docx, pptx, xlsx, doc, ppt, xls), OpenDocument (odt, odp, ods), RTF"


class ConversionFailed(DocumentError):
    code = "conversion_failed"


def is_office_head(head: bytes) -> bool:
    """Whether the first bytes may start an Office document (to be told apart by `office_type`)."""
    return head.startswith((OLE2, ZIP, RTF))


def office_type(path: Path, *, max_unpacked_bytes: int) -> str:
    """The media type of an Office document, from its content (never its name); a DocumentError names why
    the file is not one this platform converts, or why it is refused (a damaged archive, a zip bomb)."""
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(RTF):
        return RTF_TYPE
    if head.startswith(OLE2):
        return _ole_type(path)
    if head.startswith(ZIP):
        return _zip_type(path, max_unpacked_bytes)
    raise UnsupportedDocument(f"the document is not an Office document ({OFFICE_KINDS})")


def _ole_type(path: Path) -> str:
    names = {stream.encode("utf-16-le"): media_type for stream, media_type in _OLE_STREAMS.items()}
    overlap = max(len(name) for name in names)
    found: set[bytes] = set()
    with path.open("rb") as fh:  # the directory may be anywhere in the file: read it a chunk at a time
        tail = b""
        while chunk := fh.read(1024 * 1024):
            window, tail = tail + chunk, (tail + chunk)[-overlap:]
            found.update(name for name in names if name in window)
    for name, media_type in names.items():  # in order: a Word document may mention a workbook
        if name in found:
            return media_type
    raise UnsupportedDocument(
        "the file is an OLE compound file but not a Word, Excel or PowerPoint document (an Outlook message "
        "or an installer, say)"
    )


def _zip_type(path: Path, max_unpacked_bytes: int) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_ZIP_ENTRIES:
                raise DocumentTooLarge(f"the archive holds {len(entries)} files, over {MAX_ZIP_ENTRIES}")
            unpacked = sum(e.file_size for e in entries)
            packed = max(1, sum(e.compress_size for e in entries))
            if unpacked > max_unpacked_bytes or (unpacked > 10 * 2**20 and unpacked / packed > MAX_RATIO):
                raise DocumentTooLarge(
                    f"the document expands to {unpacked} bytes from {packed} (a zip bomb?): it is refused"
                )
            names = {e.filename for e in entries}
            if "mimetype" in names:
                declared = archive.read("mimetype")[:100].decode("ascii", "replace").strip()
                if declared in _OPENDOCUMENT:
                    return declared
            if "[Content_Types].xml" in names:
                for part, media_type in _OOXML_PARTS.items():
                    if part in names:
                        return media_type
    except zipfile.BadZipFile as exc:
        raise CorruptDocument(f"the document is a damaged ZIP archive ({exc})") from None
    raise UnsupportedDocument(f"the file is a ZIP archive, not an Office document ({OFFICE_KINDS})")


# -- converting -------------------------------------------------------------------------------------------

# A fresh profile for every conversion: macros never run, links are never updated, nothing is recovered.
_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">
 <prop oor:name="MacroSecurityLevel" oor:op="fuse"><value>3</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">
 <prop oor:name="DisableMacrosExecution" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Security/Scripting">
 <prop oor:name="BlockUntrustedRefererLinks" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Office.Writer/Content/Update">
 <prop oor:name="Link" oor:op="fuse"><value>2</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Content/Update">
 <prop oor:name="Link" oor:op="fuse"><value>2</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc">
 <prop oor:name="UseSystemFileDialog" oor:op="fuse"><value>false</value></prop></item>
</oor:items>
"""


@dataclass(frozen=True)
class ConverterLimits:
    timeout_s: float = 120.0
    memory_bytes: int = 2 * 2**30
    cpu_s: int = 300
    max_output_bytes: int = 512 * 2**20


@dataclass(frozen=True)
class Conversion:
    pdf: Path
    seconds: float


@cache
def _isolation() -> tuple[str, ...] | None:
    """The command prefix that gives a process a network namespace of its own (no interfaces), or None when
    this machine allows none (then Office input is off: it is never converted uncontained)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    # Its own PID namespace too, whose first process dies with unshare (--kill-child): when the converting
    # process dies, even by kill -9, every LibreOffice process it started goes with it (see _die_with_parent).
    own = ("--net", "--pid", "--fork", "--kill-child")
    for prefix in ((unshare, *own), (unshare, "--map-root-user", *own)):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return None


class OfficeConverter:
    def __init__(
        self, soffice: str = "soffice", limits: ConverterLimits | None = None, concurrency: int = 2
    ) -> None:
        self.soffice = shutil.which(soffice)
        self.limits = limits or ConverterLimits()
        self._slots = threading.BoundedSemaphore(concurrency)

    def unavailable(self) -> str | None:
        """Why Office documents cannot be converted here, or None when they can."""
        if self.soffice is None:
            return "LibreOffice (soffice) is not installed; see the README to install it"
        if _isolation() is None:
            return "this machine cannot give LibreOffice a network namespace of its own (unshare --net)"
        return None

    def convert(self, source: Path, media_type: str) -> Conversion:
        """Convert `source` (an Office document of `media_type`) to a PDF beside it; ConversionFailed with the
        reason when LibreOffice cannot, times out, crashes or hits a limit."""
        reason = self.unavailable()
        if reason is not None:
            raise ConversionFailed(f"Office documents cannot be converted here: {reason}")
        assert self.soffice is not None
        prefix = _isolation()
        assert prefix is not None
        with self._slots, tempfile.TemporaryDirectory(prefix="docvl-office-") as tmp:
            work = Path(tmp)
            profile = work / "profile"
            (profile / "user").mkdir(parents=True)
            (profile / "user" / "registrymodifications.xcu").write_text(_PROFILE)
            document = work / f"document.{EXTENSIONS[media_type]}"
            shutil.copyfile(source, document)
            command = [
                *prefix, self.soffice, "--headless", "--invisible", "--norestore", "--nolockcheck",
                "--nodefault", "--nologo", "--nofirststartwizard",
                f"-env:UserInstallation={profile.as_uri()}",
                "--convert-to", "pdf", "--outdir", str(work / "out"), str(document),
            ]  # fmt: skip
            started = time.monotonic()
            self._run(command, work)
            pdf = work / "out" / "document.pdf"
            if not pdf.is_file() or pdf.stat().st_size == 0:
                raise ConversionFailed("LibreOffice could not convert the document (it wrote no PDF)")
            target = source.with_name(source.name + ".pdf")
            shutil.move(pdf, target)
            return Conversion(target, time.monotonic() - started)

    def _run(self, command: list[str], work: Path) -> None:
        limits = self.limits

        def contain() -> None:  # in the child, before LibreOffice starts
            _die_with_parent()
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_output_bytes, limits.max_output_bytes))
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LANG": "C.UTF-8"}
        process = subprocess.Popen(
            command,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills every process it started
            preexec_fn=contain,  # only resource limits; no threads are touched
        )
        try:
            output, _ = process.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise ConversionFailed(
                f"LibreOffice did not finish converting the document within {limits.timeout_s:.0f} s"
            ) from None
        finally:
            _kill_group(process)  # whatever it left behind
        if process.returncode != 0:
            last = output.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            how = (
                f"was killed by signal {-process.returncode}"
                if process.returncode < 0
                else f"exited with {process.returncode}"
            )
            raise ConversionFailed(f"LibreOffice {how} while converting the document: {last[0][:200]}")


def _die_with_parent() -> None:
    """SIGKILL this process (unshare, whose namespace then ends) when its parent dies (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def converter_for(settings: CoreSettings) -> OfficeConverter:
    return OfficeConverter(
        settings.soffice_path,
        ConverterLimits(
            timeout_s=settings.office_timeout_s,
            memory_bytes=settings.office_memory_mb * 2**20,
            cpu_s=max(10, int(settings.office_timeout_s * 2)),
        ),
        settings.office_concurrency,
    )


def office_off(settings: CoreSettings) -> str | None:
    """Why Office input is off with these settings on this machine, or None when it is on. With
    DOCVL_OFFICE_INPUT=on, a machine that cannot convert is a configuration error (ValueError)."""
    if settings.office_input == "off":
        return "Office input is turned off (DOCVL_OFFICE_INPUT=off)"
    reason = converter_for(settings).unavailable()
    if reason is not None and settings.office_input == "on":
        raise ValueError(f"DOCVL_OFFICE_INPUT=on, but {reason}")
    return reason
