"""Image classification for Omnigrok (Liu, Michaud & Tegmark 2023): `task=mnist` and
`task=digits`, flattened pixels in [0, 1] -> float tensors [N, pixels], labels 0-9.

mnist: the HF hub's MNIST (60,000 train / 10,000 test 28 × 28 images), or local parquet files
in the hub's layout (an `image` and a `label` column), as the text tasks do; offline and
uncached it fails at once with what to do. Omnigrok trains on 1,000 of the training images:
`train_size=1000` (a seeded uniform subset; their notebook takes the first 1,000).

digits: scikit-learn's bundled 8 × 8 digits (1,797 images, 0-16 grey levels, shipped inside
the package: no network), split into train / test with `task.split_seed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from grok_cli.errors import GrokError, check
from grok_cli.hub import hub_reachable
from grok_cli.tasks.base import Split, TaskData, prune, split_indices

N_CLASSES = 10


def image_task(cfg: DictConfig, train: Split, test: Split, device: torch.device) -> TaskData:
    """The pruned train split (data_fraction / train_size, seeded) and the whole test split."""
    train = prune(train, cfg.data_fraction, cfg.train_size, cfg.seed)
    return TaskData(train=train.to(device), test=test.to(device), vocab_size=0,
                    n_classes=N_CLASSES, kind="image", label_names=[str(d) for d in range(10)])


def to_split(pixels: np.ndarray, labels: np.ndarray, scale: float) -> Split:
    x = torch.as_tensor(pixels.reshape(len(pixels), -1), dtype=torch.float32) / scale
    return Split(x, torch.as_tensor(labels, dtype=torch.long))


# ---------------------------------------------------------------- digits


def check_config(task: DictConfig) -> None:
    """task=digits: its split (task=mnist keeps the hub's own)."""
    if "train_split" in task:
        check(0 < task.train_split < 1, "task.train_split", task.train_split,
              "a fraction strictly between 0 and 1")


def build_digits(cfg: DictConfig, device: torch.device) -> TaskData:
    task = cfg.task
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise GrokError("task=digits needs scikit-learn: pip install 'grok-cli[images]' "
                        "(or pip install scikit-learn)") from None
    digits = load_digits()
    full = to_split(digits.data, digits.target, 16.0)  # grey levels 0..16
    train_idx, test_idx = split_indices(len(full), task.train_split, task.split_seed)
    return image_task(cfg, full.subset(train_idx), full.subset(test_idx), device)


# ---------------------------------------------------------------- mnist


def build_mnist(cfg: DictConfig, device: torch.device) -> TaskData:
    task = cfg.task
    files = task.data_files
    if files.train or files.test:
        check(bool(files.train) and bool(files.test), "task.data_files",
              {"train": files.train, "test": files.test},
              "both train and test parquet files (MNIST has its own test split)")
        train = _read_parquet("task.data_files.train", files.train)
        test = _read_parquet("task.data_files.test", files.test)
    else:
        splits = _load_hub(task)
        train, test = splits["train"], splits["test"]
    return image_task(cfg, _pixels(train, "train"), _pixels(test, "test"), device)


def _load_hub(task: DictConfig) -> Any:
    """The hub dataset, from the local HF cache when the hub is unreachable (text.py's rule)."""
    import datasets

    from grok_cli.tasks.text import _offline, _quiet_datasets

    online = hub_reachable()
    try:
        with _quiet_datasets(), _offline(not online):
            return datasets.load_dataset(task.hub_id)
    except Exception as err:  # ConnectionError, DatasetNotFoundError, FileNotFoundError, ...
        where = "the hub answered but" if online else "the hub is unreachable and"
        raise GrokError(
            f"dataset {task.hub_id!r}: {where} it could not be loaded ({type(err).__name__}); "
            "put it in the local HF cache (run once with hub access, or set HF_HOME to a cache "
            "that has it) or pass task.data_files.train=FILE task.data_files.test=FILE "
            "(parquet with 'image' and 'label' columns, the hub's layout)") from None


def _read_parquet(key: str, value: str) -> Any:
    import datasets

    from grok_cli.tasks.text import _quiet_datasets

    path = Path(str(value)).expanduser()
    check(path.suffix.lower() == ".parquet" and path.is_file(), key, str(value),
          "an existing .parquet file with 'image' and 'label' columns")
    try:
        with _quiet_datasets():
            table = datasets.load_dataset("parquet", data_files=str(path.resolve()),
                                          split="train")
            if "image" in table.column_names:  # files without the hub's feature metadata
                table = table.cast_column("image", datasets.Image())
            return table
    except Exception as err:  # a damaged or foreign file
        raise GrokError(f"{key}={str(value)!r} could not be read as parquet: "
                        f"{type(err).__name__}") from None


def _pixels(table: Any, where: str) -> Split:
    """[N, H*W] floats in [0, 1] from the `image` column (PIL images), labels 0-9."""
    missing = {"image", "label"} - set(table.column_names)
    if missing:
        raise GrokError(f"MNIST {where} rows lack column(s) {', '.join(sorted(missing))} (they "
                        f"have: {', '.join(table.column_names)})")
    if len(table) == 0:
        raise GrokError(f"MNIST {where} split has no rows")
    images = np.stack([np.asarray(image.convert("L"), dtype=np.uint8)
                       for image in table["image"]])
    labels = np.asarray(table["label"])
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise GrokError(f"MNIST {where} labels must be 0-9; found {labels.min()}..{labels.max()}")
    return to_split(images, labels, 255.0)
