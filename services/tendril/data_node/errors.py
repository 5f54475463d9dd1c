"""The one error type of the data node (prepare and serve) and its reasons.

DataNodeReason (what DataNodeService answers) is the wire catalogue in
:mod:`tendril_sdk.reasons`; DatasetReason covers `tendril data prepare` and opening a data
set to serve it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from tendril.core.errors import ErrorKind, TendrilError
from tendril_sdk.reasons import DataNodeReason

__all__ = ["DataNodeError", "DataNodeReason", "DatasetReason"]


class DatasetReason(enum.StrEnum):
    """Why a data set cannot be prepared or served; the command exits with it (no RPC answers it)."""

    BAD_DATASET_ID = "BAD_DATASET_ID"  # --dataset-id is not a plain name
    BAD_SEQ_LEN = "BAD_SEQ_LEN"  # --seq-len is below 2
    BAD_SLICE_SIZE = "BAD_SLICE_SIZE"  # --sequences-per-slice is below 1
    BAD_MAX_BYTES = "BAD_MAX_BYTES"  # --max-bytes is not positive
    OUT_NOT_A_FOLDER = "OUT_NOT_A_FOLDER"  # OUT exists and is a file
    OUT_NOT_EMPTY = "OUT_NOT_EMPTY"  # OUT is a folder with files in it
    SOURCE_NOT_FOUND = "SOURCE_NOT_FOUND"  # SRC does not exist
    SOURCE_UNREADABLE = "SOURCE_UNREADABLE"  # a source file cannot be read
    NO_SOURCE_FILES = "NO_SOURCE_FILES"  # SRC holds no file with the chosen suffixes
    SOURCE_TOO_SMALL = "SOURCE_TOO_SMALL"  # the text does not fill one sequence
    TOKENIZERS_MISSING = "TOKENIZERS_MISSING"  # the option needs a package of the train extra (tokenizers, ...)
    TOKENIZER_NOT_FOUND = "TOKENIZER_NOT_FOUND"  # the tokenizer folder or file does not exist
    BAD_TOKENIZER = "BAD_TOKENIZER"  # the tokenizer file cannot be loaded or used
    BAD_VOCAB_SIZE = "BAD_VOCAB_SIZE"  # --vocab-size is too small for a byte-level BPE
    BAD_EVAL_FRACTION = "BAD_EVAL_FRACTION"  # --eval-fraction is outside 0 <= f < 1
    BAD_TASK = "BAD_TASK"  # --task is not a known task, or the options do not fit it
    BAD_SOURCE = "BAD_SOURCE"  # a JSONL line / CSV / Parquet file / datasets folder cannot be parsed
    FIELD_MISSING = "FIELD_MISSING"  # a record lacks --text-field / --label-field / --target-field / --image-field
    BAD_LABEL = "BAD_LABEL"  # a label is neither a string nor a non-negative integer
    BAD_IMAGE = "BAD_IMAGE"  # an image cannot be decoded
    PROCESSOR_NOT_FOUND = "PROCESSOR_NOT_FOUND"  # --processor is not a folder
    BAD_PROCESSOR = "BAD_PROCESSOR"  # the image processor folder cannot be loaded
    NO_CHAT_TEMPLATE = "NO_CHAT_TEMPLATE"  # --chat: the tokenizer has no chat_template and no --chat-template is given
    BAD_CHAT_TEMPLATE = "BAD_CHAT_TEMPLATE"  # --chat: the template cannot be read or cannot render a conversation
    BAD_CHAT_RECORD = "BAD_CHAT_RECORD"  # --chat: a record's messages are not a list of {role, content}
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"  # add-model: MODEL_DIR is not a folder
    BAD_MODEL = "BAD_MODEL"  # add-model: no config.json or SafeTensors weights, or a bad --name
    PICKLE_ONLY_MODEL = "PICKLE_ONLY_MODEL"  # add-model: the folder's weights are pickle files only
    MODEL_EXISTS = "MODEL_EXISTS"  # add-model: the data set has a file of that name (--force replaces a model)
    MANIFEST_MISSING = "MANIFEST_MISSING"  # the folder to serve has no manifest.json
    BAD_MANIFEST = "BAD_MANIFEST"  # manifest.json is unreadable or breaks the format
    SLICE_FILE_MISSING = "SLICE_FILE_MISSING"  # a slice listed in the manifest is missing
    SLICE_FILE_DAMAGED = "SLICE_FILE_DAMAGED"  # a slice's (or asset's) size or sha256 differs from the manifest's


class DataNodeError(TendrilError):
    """Bad data set input, a missing or damaged data set, or a bad FetchSlice request."""

    service = "data_node"

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        reason: DataNodeReason | DatasetReason,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(kind, message, reason=reason, metadata=metadata)
