"""Office documents made in code for the conversion tests: python-docx, python-pptx and openpyxl documents,
a hand-made OpenDocument text with a macro bound to its opening and a linked (not embedded) image, a
damaged docx and a zip bomb dressed as a docx."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import openpyxl
import pptx


def word(path: Path, pages: int) -> Path:
    document = docx.Document()
    for number in range(1, pages + 1):
        document.add_heading(f"Section {number}", 1)
        document.add_paragraph(f"Paragraph of section {number}. " * 30)
        if number < pages:
            document.add_page_break()
    document.save(str(path))
    return path


def slides(path: Path, count: int) -> Path:
    presentation = pptx.Presentation()
    for number in range(1, count + 1):
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = f"Slide {number}"
        slide.placeholders[1].text = "First point\nSecond point"
    presentation.save(str(path))
    return path


def sheet(path: Path) -> Path:
    workbook = openpyxl.Workbook()
    rows = workbook.active
    assert rows is not None
    for number in range(1, 40):
        rows.append([number, number * number, f"row {number}"])
    workbook.save(str(path))
    return path


_MACRO = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE script:module PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "module.dtd">
<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1" \
script:language="StarBasic">Sub Main
  Open "{marker}" For Output As #1
  Print #1, "the macro ran"
  Close #1
End Sub
</script:module>
"""
_CONTENT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
 xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0"
 xmlns:xlink="http://www.w3.org/1999/xlink" office:version="1.3">
<office:scripts><office:event-listeners>
<script:event-listener script:language="ooo:script" script:event-name="office:load"
 xlink:href="vnd.sun.star.script:Standard.Module1.Main?language=Basic&amp;location=document"/>
</office:event-listeners></office:scripts>
<office:body><office:text>
<text:p>A document with a macro and a linked image.</text:p>
<text:p><draw:frame draw:name="linked" svg:width="2cm" svg:height="2cm" text:anchor-type="as-char">
<draw:image xlink:href="{image_url}" xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/>
</draw:frame></text:p>
</office:text></office:body></office:document-content>
"""
_MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.3">
 <manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>
 <manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>
 <manifest:file-entry manifest:full-path="Basic/script-lc.xml" manifest:media-type="text/xml"/>
 <manifest:file-entry manifest:full-path="Basic/Standard/script-lb.xml" manifest:media-type="text/xml"/>
 <manifest:file-entry manifest:full-path="Basic/Standard/Module1.xml" manifest:media-type="text/xml"/>
</manifest:manifest>
"""
_LIBRARIES = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE library:libraries PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "libraries.dtd">
<library:libraries xmlns:library="http://openoffice.org/2000/library" xmlns:xlink="http://www.w3.org/1999/xlink">
 <library:library library:name="Standard" library:link="false"/>
</library:libraries>
"""
_LIBRARY = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE library:library PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "library.dtd">
<library:library xmlns:library="http://openoffice.org/2000/library" library:name="Standard"
 library:readonly="false" library:passwordprotected="false">
 <library:element library:name="Module1"/>
</library:library>
"""


def text_with_macro_and_link(path: Path, *, marker: Path, image_url: str) -> Path:
    """An ODT whose macro, if it ever ran, writes `marker`, and whose image LibreOffice would fetch from
    `image_url` if it could reach it."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text", zipfile.ZIP_STORED)
        archive.writestr("content.xml", _CONTENT.format(image_url=image_url), zipfile.ZIP_DEFLATED)
        archive.writestr("META-INF/manifest.xml", _MANIFEST, zipfile.ZIP_DEFLATED)
        archive.writestr("Basic/script-lc.xml", _LIBRARIES, zipfile.ZIP_DEFLATED)
        archive.writestr("Basic/Standard/script-lb.xml", _LIBRARY, zipfile.ZIP_DEFLATED)
        archive.writestr("Basic/Standard/Module1.xml", _MACRO.format(marker=marker), zipfile.ZIP_DEFLATED)
    return path


def damaged_word(path: Path) -> Path:
    """A docx by its parts list, whose document part is not XML at all."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr("word/document.xml", b"\x00\x01 this is not XML \xff" * 100)
    return path


def zip_bomb(path: Path, unpacked_bytes: int) -> Path:
    """A docx by its parts list whose document part expands to `unpacked_bytes` of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            block = bytes(1024 * 1024)
            for _ in range(unpacked_bytes // len(block)):
                part.write(block)
    path.write_bytes(buffer.getvalue())
    return path
