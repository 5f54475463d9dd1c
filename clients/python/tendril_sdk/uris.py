"""``tendril-data://<dataset_id>/<asset name>``: a file a data node serves beside a data set's slices.

The URI names the data set and one of its manifest's ``assets`` (e.g. ``model.tar``, a
checkpoint packed by ``tendril data add-model``), not a host: the job bridge fetches it from
the data node that serves the job's data set, whose address the scheduler puts in the job's
config (``data_node``). Both parts are plain names: 1-128 characters of A-Z, a-z, 0-9, '.',
'_' or '-', not starting with '.' or '-'.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

__all__ = ["DATA_SCHEME", "DataAssetURI", "parse_data_uri"]

DATA_SCHEME = "tendril-data"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_FORM = f"{DATA_SCHEME}://<dataset_id>/<asset name>"


@dataclasses.dataclass(frozen=True)
class DataAssetURI:
    """A parsed ``tendril-data://`` URI."""

    dataset_id: str
    name: str

    def __str__(self) -> str:
        return f"{DATA_SCHEME}://{self.dataset_id}/{self.name}"


def parse_data_uri(uri: str) -> DataAssetURI:
    """The data set and asset a ``tendril-data://`` URI names; ValueError saying what is wrong."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme != DATA_SCHEME:
        raise ValueError(f"{uri!r} is not a {DATA_SCHEME}:// URI; write {_FORM}")
    if parsed.query or parsed.fragment or parsed.username or parsed.password or parsed.port:
        raise ValueError(f"{uri!r} has parts a {DATA_SCHEME}:// URI cannot have; write {_FORM}")
    dataset_id, name = parsed.netloc, parsed.path.removeprefix("/")
    if not _NAME.fullmatch(dataset_id):
        raise ValueError(
            f"{uri!r}: the data set id {dataset_id!r} is not a plain name (1-128 of A-Z a-z 0-9 . _ -); write {_FORM}"
        )
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{uri!r}: the asset name {name!r} is not a plain file name (1-128 of A-Z a-z 0-9 . _ -, no '/'); "
            f"write {_FORM}"
        )
    return DataAssetURI(dataset_id, name)
