"""Text classification (IMDB, Yelp, Natural-Instructions): hub or local files -> token tensors.

The Critical Data Size recipe: pool the dataset's own train and test rows, drop texts longer
than `task.max_length` tokens ([CLS] and [SEP] included), then a seeded 75 / 25 split
(IMDB: 28,097 kept reviews -> 21,072 / 7,025, the paper's numbers). `keep_original_split`
keeps the dataset's own split instead. Tokenized texts are cached in `task.cache_dir`, keyed
by the data's content, the tokenizer and `max_length`, so a second run tokenizes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from grok_cli.errors import GrokError, check
from grok_cli.hub import hub_reachable
from grok_cli.io import atomic_write
from grok_cli.tasks.base import Split, TaskData, prune, split_indices
from grok_cli.tasks.tokenizers import build_tokenizer, fingerprint, texts_hash

log = logging.getLogger("grok")

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
CACHE_VERSION = "1"  # bump when the cached tensors' layout or meaning changes
CHUNK = 10_000  # texts per encode_batch call: bounds the memory of the Encoding objects


@dataclass
class Rows:
    """One source split: raw texts and raw labels, in the source's order."""

    texts: list[str]
    labels: list[Any]
    label_names: list[str] | None = None  # a hub ClassLabel's names, by raw id


@dataclass
class Encoded:
    """The kept (short enough) rows of train + test, in pooled order; ids concatenated."""

    ids: torch.Tensor  # [sum(lengths)] int32
    lengths: torch.Tensor  # [N] int64
    labels: torch.Tensor  # [N] class ids 0..C-1
    from_test: torch.Tensor  # [N] bool: the row came from the source's test split
    label_names: list[str]


def default_cache_dir() -> Path:
    return Path(os.environ.get("GROK_CACHE_DIR", "~/.cache/grok")).expanduser()


# Texts are padded to the longest kept one: each Split carries its attention mask, which a
# loop must pass to the model (launcher=batched does not: it refuses padded tasks).
PADDED = True


def title(task: DictConfig) -> str:
    """The task and its data."""
    return f"{task.name} ({(task.get('data_files') or {}).get('train') or task.hub_id})"


def build_text(cfg: DictConfig, device: torch.device) -> TaskData:
    task = cfg.task
    cache_dir = Path(task.cache_dir).expanduser() if task.cache_dir else default_cache_dir()
    train_rows, test_rows = load_rows(task, cache_dir)
    tokenizer = build_tokenizer(cfg.tokenizer, train_rows.texts, cache_dir)
    encoded = encode_cached(train_rows, test_rows, tokenizer, task, cache_dir)
    full = to_split(encoded, pad_id=tokenizer.token_to_id("[PAD]") or 0)
    if task.keep_original_split:
        train_idx = (~encoded.from_test).nonzero().squeeze(1)
        test_idx = encoded.from_test.nonzero().squeeze(1)
    else:
        train_idx, test_idx = split_indices(len(full), task.train_split, task.split_seed)
    check(len(train_idx) > 0 and len(test_idx) > 0, "task.max_length", task.max_length,
          f"a length that keeps texts in both splits ({len(train_idx)} train, "
          f"{len(test_idx)} test kept)")
    train = prune(full.subset(train_idx), cfg.data_fraction, cfg.train_size, cfg.seed)
    log.info("labels: %s", {name: i for i, name in enumerate(encoded.label_names)})
    return TaskData(
        train=train.to(device),
        test=full.subset(test_idx).to(device),
        vocab_size=tokenizer.get_vocab_size(),
        n_classes=len(encoded.label_names),
        kind="classify",
        label_names=encoded.label_names,
        tokenizer_fingerprint=fingerprint(tokenizer),
    )


def check_config(task: DictConfig) -> None:
    check(isinstance(task.max_length, int) and task.max_length >= 3, "task.max_length",
          task.max_length, "an integer >= 3 (tokens, [CLS] and [SEP] included)")
    check(0 < task.train_split < 1, "task.train_split", task.train_split,
          "a fraction strictly between 0 and 1")
    check(isinstance(task.keep_original_split, bool), "task.keep_original_split",
          task.keep_original_split, "true or false")


# ---------------------------------------------------------------- loading


def load_rows(task: DictConfig, cache_dir: Path) -> tuple[Rows, Rows | None]:
    """The source's train rows and its test rows (None when there is no test source)."""
    files = task.data_files
    if files.train or files.test:
        check(bool(files.train), "task.data_files.train", files.train,
              "a file path (json, jsonl, csv or parquet); needed whenever data_files.test is set")
        train = _read_file("task.data_files.train", files.train, task, cache_dir)
        test = _read_file("task.data_files.test", files.test, task, cache_dir) \
            if files.test else None
    else:
        splits = _load_hub(task, cache_dir)
        train = _concat(task, splits, "train")
        test = _concat(task, splits, "test") if task.hub_splits.get("test") else None
    if task.keep_original_split and test is None:
        raise GrokError("task.keep_original_split=true needs a test split: set "
                        "task.data_files.test=FILE, or keep_original_split=false")
    return train, test


def _read_file(key: str, path_value: str, task: DictConfig, cache_dir: Path) -> Rows:
    path = Path(str(path_value)).expanduser()
    check(path.suffix.lower() in FILE_BUILDERS, key, str(path_value),
          "a .json, .jsonl, .csv or .parquet file")
    check(path.is_file(), key, str(path_value), "an existing file")
    if path.stat().st_size == 0:
        raise GrokError(f"{key}={str(path_value)!r} is empty: it needs rows with "
                        f"{task.text_column!r} and {task.label_column!r} columns")
    import datasets

    try:
        with _quiet_datasets(logs=True):  # its ERROR line would come before ours
            table = datasets.load_dataset(FILE_BUILDERS[path.suffix.lower()],
                                          data_files=str(path.resolve()), split="train",
                                          cache_dir=str(cache_dir / "datasets"))
    except Exception as err:  # parse errors come in many types, all the user's file
        while (inner := err.__cause__ or err.__context__) is not None:
            err = inner  # the parser's own words, not datasets' "An error occurred ..."
        raise GrokError(f"{key}={str(path_value)!r} could not be read as "
                        f"{path.suffix.lower()[1:]}: {type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}") from None
    return _rows(key, str(path_value), table, task)


def _load_hub(task: DictConfig, cache_dir: Path) -> Any:
    """The hub dataset (a DatasetDict), from the local HF cache when the hub is unreachable."""
    import datasets

    online = hub_reachable()
    try:
        with _quiet_datasets(), _offline(not online):
            return datasets.load_dataset(task.hub_id, task.hub_config)
    except Exception as err:  # ConnectionError, DatasetNotFoundError, FileNotFoundError, ...
        where = "the hub answered but" if online else "the hub is unreachable and"
        raise GrokError(
            f"dataset {task.hub_id!r}: {where} it could not be loaded "
            f"({type(err).__name__}); put it in the local HF cache (run once with hub access, "
            "or set HF_HOME to a cache that has it) or pass task.data_files.train=FILE "
            "[task.data_files.test=FILE] (json/jsonl/csv/parquet with "
            f"{task.text_column!r} and {task.label_column!r} columns)") from None


def _concat(task: DictConfig, splits: Any, role: str) -> Rows:
    parts = []
    for name in task.hub_splits[role]:
        check(name in splits, f"task.hub_splits.{role}", list(task.hub_splits[role]),
              f"split names of {task.hub_id}: {', '.join(splits)}")
        parts.append(_rows(f"task.hub_splits.{role}", name, splits[name], task))
    return Rows([t for p in parts for t in p.texts], [y for p in parts for y in p.labels],
                parts[0].label_names)


def _rows(key: str, where: str, table: Any, task: DictConfig) -> Rows:
    for column in (task.text_column, task.label_column):
        if column not in table.column_names:
            name = "text_column" if column == task.text_column else "label_column"
            raise GrokError(f"{key}={where!r} has no {column!r} column (it has: "
                            f"{', '.join(table.column_names)}); set task.{name}=COLUMN")
    if len(table) == 0:
        raise GrokError(f"{key}={where!r} has no rows")
    feature = table.features[task.label_column]
    names = list(feature.names) if hasattr(feature, "names") else None  # a ClassLabel
    texts = table[task.text_column]
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise GrokError(f"{key}={where!r}: column {task.text_column!r} must hold strings; "
                        f"row {bad} has {texts[bad]!r}")
    return Rows(list(texts), list(table[task.label_column]), names)


@contextmanager
def _offline(offline: bool):
    """HF offline mode for this call only: cached files are used and nothing is retried."""
    if not offline:
        yield
        return
    import datasets
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


@contextmanager
def _quiet_datasets(logs: bool = False):
    """No `Generating train split` bars in run logs; with `logs`, none of datasets' log lines
    either (a local file: its parse error is ours to report, once, naming the key; the hub's
    keep theirs, e.g. that a cached version is used)."""
    import datasets

    was_enabled = datasets.utils.logging.is_progress_bar_enabled()
    verbosity = datasets.utils.logging.get_verbosity()
    datasets.utils.logging.disable_progress_bar()
    if logs:
        datasets.utils.logging.set_verbosity(logging.CRITICAL)
    try:
        yield
    finally:
        datasets.utils.logging.set_verbosity(verbosity)
        if was_enabled:
            datasets.utils.logging.enable_progress_bar()


# ---------------------------------------------------------------- labels and tokens


def class_ids(labels: list[Any], names: list[str] | None, key: str) -> tuple[list[int], list[str]]:
    """Raw labels -> class ids 0..C-1 in sorted order of the raw values, and their names.

    A one-element list (Natural-Instructions' `output`) counts as its element.
    """
    values = [y[0] if isinstance(y, list) and len(y) == 1 else y for y in labels]
    kinds = {type(v) for v in values}
    if not kinds <= {int, str} or len(kinds) != 1:
        bad = next(v for v in values
                   if type(v) not in (int, str) or type(v) is not type(values[0]))
        raise GrokError(f"{key}: labels must be all integers or all strings; found "
                        f"{bad!r} ({type(bad).__name__})")
    distinct = sorted(set(values))
    if len(distinct) < 2:
        raise GrokError(f"{key}: labels need at least 2 classes; found only {distinct!r}")
    index = {v: i for i, v in enumerate(distinct)}
    label_names = [names[v] if names and isinstance(v, int) and 0 <= v < len(names) else str(v)
                   for v in distinct]
    return [index[v] for v in values], label_names


def encode_cached(train: Rows, test: Rows | None, tokenizer: Any, task: DictConfig,
                  cache_dir: Path) -> Encoded:
    """Tokenize train + test once; later runs on the same data load the cached tensors."""
    rows = [train] if test is None else [train, test]
    texts = [t for r in rows for t in r.texts]
    raw_labels = [y for r in rows for y in r.labels]
    content = hashlib.sha256("\0".join([
        CACHE_VERSION, texts_hash(texts), repr(raw_labels), str(len(train.texts)),
        fingerprint(tokenizer), str(task.max_length)]).encode()).hexdigest()[:24]
    path = cache_dir / "tokenized" / f"{content}.pt"
    if path.exists():
        from grok_cli.runfolder.checkpoints import verify

        try:
            verify(path)  # a damaged cache would train on other tokens without a word
            log.info("tokens: from cache %s", path)
            return Encoded(**torch.load(path, weights_only=True))
        except GrokError as err:
            log.warning("%s; tokenizing again", err)
    labels, label_names = class_ids(raw_labels, train.label_names,
                                    f"task.label_column={task.label_column!r}")
    ids, lengths = [], []
    for start in range(0, len(texts), CHUNK):
        # Tensors per chunk: Python ints for all of Yelp's ~10^8 tokens would take GBs.
        chunk = [enc.ids for enc in tokenizer.encode_batch(texts[start:start + CHUNK])]
        lengths.append(torch.tensor([len(seq) for seq in chunk]))
        ids.append(torch.tensor([t for seq in chunk if len(seq) <= task.max_length
                                 for t in seq], dtype=torch.int32))
    all_lengths = torch.cat(lengths)
    kept = (all_lengths <= task.max_length).nonzero().squeeze(1)
    if len(kept) == 0:
        raise GrokError(f"task.max_length={task.max_length} is not allowed: it drops every "
                        f"one of the {len(texts)} texts (the shortest has "
                        f"{int(all_lengths.min())} tokens); raise it")
    encoded = Encoded(ids=torch.cat(ids), lengths=all_lengths[kept],
                      labels=torch.tensor(labels)[kept], from_test=kept >= len(train.texts),
                      label_names=label_names)
    log.info("tokens: %d of %d texts have <= %d tokens; cached in %s", len(kept), len(texts),
             task.max_length, path)
    _save(path, encoded)
    return encoded


def _save(path: Path, encoded: Encoded) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:  # concurrent jobs may race here: one wins whole
        torch.save(dict(vars(encoded)), handle)


def to_split(encoded: Encoded, pad_id: int) -> Split:
    """Right-pad to the longest kept text: the attention mask makes more padding a no-op."""
    positions = torch.arange(int(encoded.lengths.max()))
    mask = positions < encoded.lengths[:, None]
    x = torch.full(mask.shape, pad_id, dtype=torch.long)
    x[mask] = encoded.ids.long()  # row-major order of the mask = concatenation order of ids
    return Split(x, encoded.labels, mask)  # a bool mask: 1 byte a token on the device
