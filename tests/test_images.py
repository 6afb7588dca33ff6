"""Image tasks (task=mnist on a local fixture, task=digits), model=image_mlp and loss=mse."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import grok_here
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from grok_cli.cli import conf_dir
from grok_cli.tasks import build_task
from grok_cli.training.losses import build_loss

TINY_MLP = ["model=image_mlp", "model.hidden_size=16", "loss=mse", "steps=20", "eval_every=10",
            "ckpt_every=20", "batch_size=8", "progress=log"]


def run_config(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return compose(config_name="run", overrides=list(overrides))


def write_mnist_parquet(path, labels: list[int]) -> np.ndarray:
    """A parquet file in the hub's MNIST layout (PNG `image`, int `label`); returns the pixels.
    Image i is all zeros but pixel (i, 3) = 10 * i + 5 and pixel (27, 27) = 255."""
    import datasets
    from PIL import Image

    pixels = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    for i in range(len(labels)):
        pixels[i, i, 3] = 10 * i + 5
        pixels[i, 27, 27] = 255
    images = [Image.fromarray(p, mode="L") for p in pixels]
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(num_classes=10)})
    datasets.Dataset.from_dict({"image": images, "label": labels},
                               features=features).to_parquet(str(path))
    return pixels


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mnist")
    train = write_mnist_parquet(tmp / "train.parquet", [i % 10 for i in range(20)])
    write_mnist_parquet(tmp / "test.parquet", [(i * 3) % 10 for i in range(10)])
    return tmp, train


def test_mnist_fixture_pixels_and_labels(mnist_files):
    tmp, pixels = mnist_files
    cfg = run_config("task=mnist", f"task.data_files.train={tmp / 'train.parquet'}",
                     f"task.data_files.test={tmp / 'test.parquet'}")
    task = build_task(cfg)
    assert task.kind == "image" and task.n_classes == 10
    assert task.train.x.shape == (20, 784) and task.test.x.shape == (10, 784)
    assert task.train.x.dtype == torch.float32
    # flattened row-major, divided by 255: pixel (i, 3) of image i is column 28 i + 3
    for i in (0, 7, 19):
        assert task.train.x[i, 28 * i + 3].item() == pytest.approx((10 * i + 5) / 255)
    assert task.train.x[:, 783].eq(1.0).all()  # 255 / 255, exactly
    assert task.train.x.sum().item() == pytest.approx(pixels.astype(np.float64).sum() / 255,
                                                      rel=1e-6)
    assert task.train.y.tolist() == [i % 10 for i in range(20)]
    assert task.test.y.tolist() == [(i * 3) % 10 for i in range(10)]


def test_mnist_fixture_trains_with_train_size(mnist_files, tmp_path):
    tmp, _ = mnist_files
    result = grok_here("run", "task=mnist", f"task.data_files.train={tmp / 'train.parquet'}",
                       f"task.data_files.test={tmp / 'test.parquet'}", "train_size=12", *TINY_MLP,
                       f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["n_train"] == 12
    assert summary["n_test"] == 10


def test_mnist_offline_without_cache_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty_hf_home" / "datasets"))
    result = grok_here("run", "task=mnist", *TINY_MLP, f"hydra.run.dir={tmp_path / 'run'}",
                       cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "'ylecun/mnist'" in lines[0] and "unreachable" in lines[0]
    assert "task.data_files.train" in lines[0]


def test_digits_split_and_pixels():
    from sklearn.datasets import load_digits

    task = build_task(run_config("task=digits"))
    assert len(task.train) == 898 and len(task.test) == 899  # floor(1797 * 0.5)
    data = load_digits()
    both = torch.cat([task.train.x, task.test.x])
    assert both.shape == (1797, 64) and both.min() == 0 and both.max() == 1
    # each image is one of sklearn's, grey levels divided by 16, with its own label
    rows = {tuple(row): label for row, label in zip((data.data / 16).tolist(),
                                                     data.target.tolist(), strict=True)}
    for x, y in zip(task.train.x[:50].tolist(), task.train.y[:50].tolist(), strict=True):
        assert rows[tuple(np.float32(x).astype(np.float64))] == y


def test_mse_is_torch_mse_on_one_hot():
    torch.manual_seed(0)
    logits, labels = torch.randn(7, 10), torch.randint(0, 10, (7,))
    loss = build_loss(OmegaConf.create({"name": "mse"}))
    expected = torch.nn.MSELoss()(logits, torch.eye(10)[labels])
    assert loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss(logits, labels, reduction="sum").item() == pytest.approx(7 * expected.item(),
                                                                         rel=1e-6)
    # by hand: one sample, logits 0 except 2 at its label 1 -> (2 - 1)^2 / 10
    assert loss(torch.tensor([[0.0, 2.0] + [0.0] * 8]), torch.tensor([1])).item() == \
        pytest.approx(0.1)


@pytest.mark.parametrize("args, words", [
    (["task=digits", "model=gpt"], "model='gpt'"),
    (["model=image_mlp"], "model='image_mlp'"),
])
def test_image_and_token_models_do_not_mix(tmp_path, args, words):
    result = grok_here("run", *args, "steps=10", f"hydra.run.dir={tmp_path / 'run'}",
                       cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], lines


def test_omnigrok_mnist_is_their_notebook():
    """KindXiaoming/Omnigrok mnist/grokking/mnist-grokking.ipynb, copied by hand."""
    cfg = run_config("experiment=omnigrok_mnist")
    assert (cfg.task.name, cfg.train_size, cfg.model.name) == ("mnist", 1000, "image_mlp")
    assert (cfg.model.num_layers + 1, cfg.model.hidden_size) == (3, 200)  # depth = linears
    assert (cfg.alpha, cfg.weight_decay, cfg.optimizer.name, cfg.optimizer.lr) == (
        8.0, 0.01, "adamw", 1e-3)
    assert list(cfg.optimizer.betas) == [0.9, 0.999]  # torch.optim.AdamW's defaults
    assert (cfg.loss.name, cfg.batch_size, cfg.steps) == ("mse", 200, 100_000)
