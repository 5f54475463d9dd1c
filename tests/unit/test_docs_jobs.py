"""docs/JOBS.md's job.toml is a valid job file and names every key the schema has."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from tendril.submit.jobfile import JobFile, load_job_text

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "JOBS.md"


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        key = field.alias or name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation, f"{prefix}{key}.")
        elif key != "config":
            keys.add(f"{prefix}{key}")
    return keys


def test_the_documented_job_toml_loads_and_names_every_key() -> None:
    # The reference job.toml (the walkthrough's come before it): the one that names `retries`.
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", GUIDE.read_text(), re.DOTALL) if "\nretries =" in b]
    assert len(blocks) == 1, "docs/JOBS.md has no reference job.toml naming every key"
    text = blocks[0]
    job = load_job_text(text)
    assert job.config == {"results": {"answer.txt": "42"}}
    table = ""
    documented = set()
    for line in text.splitlines():
        if line.startswith("["):
            table = line.strip("[] ").split("]")[0] + "."
        elif "=" in line and not line.startswith("#"):
            documented.add(table + line.split("=")[0].strip() if table else line.split("=")[0].strip())
    assert _keys(JobFile) <= documented, _keys(JobFile) - documented
