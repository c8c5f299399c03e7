"""The committed gRPC stubs are what `make proto` generates from proto/ today."""

from __future__ import annotations

import filecmp
from pathlib import Path

from scripts.gen_proto import PROTO_DIR, ROOT, generate


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "protoc produced nothing"
    stale = [
        str(rel)
        for rel in generated
        if not (ROOT / rel).is_file() or not filecmp.cmp(tmp_path / rel, ROOT / rel, shallow=False)
    ]
    assert not stale, f"stubs out of date with {PROTO_DIR}: run `make proto` and commit ({stale})"
    committed = {p.relative_to(ROOT) for p in (ROOT / "docvl" / "v1").glob("*_pb2*")}
    assert committed == set(generated), "stubs without a .proto: delete them or run `make proto`"
