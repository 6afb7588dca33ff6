"""Text tasks through the real loading path: local files, tokenizers, length filter, split,
token cache, bad input, and the hub failing fast offline."""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import shutil
import time

import pytest
import torch
from conftest import grok_here
from tokenizers import Tokenizer

from grok_cli.errors import GrokError
from grok_cli.tasks import build_task
from grok_cli.tasks import text as text_module

POSITIVE = ["great", "wonderful", "superb", "loved", "excellent", "delightful"]
NEGATIVE = ["awful", "terrible", "boring", "hated", "dreadful", "poor"]
FILLER = "the a movie film plot actor scene story was it this and of with very".split()


def reviews(n: int, seed: int = 0, max_words: int = 30) -> list[tuple[str, int]]:
    """Short synthetic reviews whose label shows in their words; lengths 4 … max_words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, max_words - 1))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
        rows.append((" ".join(words), label))
    return rows


def write_jsonl(path, rows, label_key="label", names=None):
    with open(path, "w") as f:
        for text, label in rows:
            f.write(json.dumps({"text": text, label_key: names[label] if names else label}) + "\n")
    return path


def write_csv(path, rows, names=None):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for text, label in rows:
            writer.writerow([text, names[label] if names else label])
    return path


@pytest.fixture
def files(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", reviews(240, seed=1))
    test = write_jsonl(tmp_path / "test.jsonl", reviews(80, seed=2))
    return train, test


def text_cfg(run_cfg, tmp_path, *overrides):
    return run_cfg("task=imdb", f"task.cache_dir={tmp_path / 'cache'}", *overrides)


def test_pooled_recipe_filters_by_length_then_splits_75_25(run_cfg, tmp_path, files):
    train, test = files
    max_length = 16
    cfg = text_cfg(run_cfg, tmp_path, f"task.data_files.train={train}",
                   f"task.data_files.test={test}", "tokenizer=wordpiece",
                   f"task.max_length={max_length}")
    data = build_task(cfg)
    # Every word is frequent, so the WordPiece vocabulary holds whole words: a review is
    # its word count + 2 tokens ([CLS], [SEP]). Count the kept ones independently.
    rows = reviews(240, seed=1) + reviews(80, seed=2)
    kept = [r for r in rows if len(r[0].split()) + 2 <= max_length]
    assert len(data.train) == math.floor(0.75 * len(kept))
    assert len(data.train) + len(data.test) == len(kept)
    assert data.kind == "classify" and data.n_classes == 2
    assert data.train.x.shape[1] == max(len(t.split()) + 2 for t, _ in kept)
    assert torch.equal(data.train.mask.sum(1), (data.train.x != 0).sum(1))  # [PAD] = 0
    assert data.label_names == ["0", "1"]


def test_keep_original_split_and_train_file_alone(run_cfg, tmp_path, files):
    train, test = files
    kept = build_task(text_cfg(run_cfg, tmp_path, f"task.data_files.train={train}",
                               f"task.data_files.test={test}", "task.keep_original_split=true",
                               "tokenizer=wordpiece"))
    assert (len(kept.train), len(kept.test)) == (240, 80)
    alone = build_task(text_cfg(run_cfg, tmp_path, f"task.data_files.train={train}",
                                "tokenizer=wordpiece", "task.train_split=0.5"))
    assert (len(alone.train), len(alone.test)) == (120, 120)
    pruned = build_task(text_cfg(run_cfg, tmp_path, f"task.data_files.train={train}",
                                 "tokenizer=wordpiece", "train_size=50"))
    assert len(pruned.train) == 50


def test_string_labels_from_csv_map_in_sorted_order(run_cfg, tmp_path):
    rows = reviews(100, seed=3)
    path = write_csv(tmp_path / "train.csv", rows, names=["neg", "pos"])
    data = build_task(text_cfg(run_cfg, tmp_path, f"task.data_files.train={path}",
                               "tokenizer=wordpiece", "task.train_split=0.5"))
    assert data.label_names == ["neg", "pos"]
    vocab = Tokenizer.from_file(
        str(next((tmp_path / "cache" / "tokenizers").glob("*.json")))).get_vocab()
    positive_ids = torch.tensor([vocab[w] for w in POSITIVE])
    for split in (data.train, data.test):
        has_positive = torch.isin(split.x, positive_ids).any(1)
        assert torch.equal(has_positive.long(), split.y)  # "pos" = 1


class CountingTokenizer:
    """Delegates to a real tokenizer and counts encode_batch calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def encode_batch(self, texts):
        self.calls += 1
        return self.inner.encode_batch(texts)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_second_run_on_the_same_data_tokenizes_nothing(run_cfg, tmp_path, files, monkeypatch):
    train, test = files
    made = []
    real = text_module.build_tokenizer

    def counting(*args):
        made.append(CountingTokenizer(real(*args)))
        return made[-1]

    monkeypatch.setattr(text_module, "build_tokenizer", counting)
    cfg = text_cfg(run_cfg, tmp_path, f"task.data_files.train={train}",
                   f"task.data_files.test={test}", "tokenizer=wordpiece")
    first, second = build_task(cfg), build_task(cfg)
    assert made[0].calls > 0 and made[1].calls == 0
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.y, second.test.y)
    changed = text_cfg(run_cfg, tmp_path, f"task.data_files.train={train}",
                       f"task.data_files.test={test}", "tokenizer=wordpiece",
                       "task.max_length=12")
    build_task(changed)  # another setting: another cache entry
    assert made[2].calls > 0


def test_bert_tokenizer_from_a_local_folder(run_cfg, tmp_path, files):
    from transformers import BertTokenizerFast

    words = sorted(set(POSITIVE + NEGATIVE + FILLER))
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    folder = tmp_path / "tiny-bert"
    reference = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)})
    reference.save_pretrained(folder)
    train, test = files
    data = build_task(text_cfg(run_cfg, tmp_path, f"task.data_files.train={train}",
                               f"task.data_files.test={test}", "tokenizer=bert",
                               f"tokenizer.name_or_path={folder}",
                               "task.keep_original_split=true"))
    assert data.vocab_size == len(words) + 5
    text = reviews(240, seed=1)[0][0]
    expected = reference(text)["input_ids"]
    assert data.train.x[0, : len(expected)].tolist() == expected
    assert data.train.mask[0].sum() == len(expected)


def test_auto_falls_back_to_wordpiece_offline_and_bert_fails_clearly(
        run_cfg, tmp_path, files, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # conftest's fresh_hub_probe: probed anew
    train, _ = files
    missing = "grok-tests/no-such-tokenizer"
    with caplog.at_level(logging.INFO, logger="grok"):
        build_task(text_cfg(run_cfg, tmp_path, f"task.data_files.train={train}",
                            "tokenizer=auto", f"tokenizer.name_or_path={missing}"))
    assert "training a WordPiece" in caplog.text
    with pytest.raises(GrokError, match="tokenizer.name_or_path"):
        build_task(text_cfg(run_cfg, tmp_path, f"task.data_files.train={train}",
                            "tokenizer=bert", f"tokenizer.name_or_path={missing}"))


@pytest.mark.parametrize("case, message", [
    ("no_label", "no 'label' column"),
    ("empty", "is empty"),
    ("float_labels", "labels must be all integers or all strings"),
    ("too_short", "task.max_length=4 is not allowed"),
])
def test_bad_input_is_one_clear_error(run_cfg, tmp_path, case, message):
    rows = reviews(40)
    path = tmp_path / "train.jsonl"
    extra = []
    if case == "no_label":
        write_jsonl(path, rows, label_key="sentiment")
    elif case == "empty":
        path.write_text("")
    elif case == "float_labels":
        path.write_text("".join(json.dumps({"text": t, "label": y + 0.5}) + "\n"
                                for t, y in rows))
    else:
        write_jsonl(path, rows)
        extra = ["task.max_length=4"]
    with pytest.raises(GrokError, match=message):
        build_task(text_cfg(run_cfg, tmp_path, f"task.data_files.train={path}",
                            "tokenizer=wordpiece", *extra))


def test_unreachable_hub_fails_fast_in_process(run_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # a real probe ...
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")  # ... of a host that never resolves
    began = time.perf_counter()
    with pytest.raises(GrokError, match="grok-tests/not-cached.*task.data_files.train"):
        build_task(text_cfg(run_cfg, tmp_path, "task.hub_id=grok-tests/not-cached"))
    assert time.perf_counter() - began < 10


def test_cli_trains_bert_and_lstm_on_local_files(tmp_path, files):
    train, test = files
    sweep = tmp_path / "sweep"
    result = grok_here("run", "-m", "task=imdb", "model=bert,lstm",
                       f"task.data_files.train={train}", f"task.data_files.test={test}",
                       f"task.cache_dir={tmp_path / 'cache'}", "tokenizer=wordpiece",
                       "model.hidden_size=32", "++model.num_heads=2", "++model.embed_dim=16",
                       "model.num_layers=1", "batch_size=32", "steps=2", "eval_every=1",
                       "ckpt_every=2", "alpha=10", "progress=log",
                       f"hydra.sweep.dir={sweep}", cwd=tmp_path, check=True)
    assert "Traceback" not in result.stderr
    for job, model in ((0, "bert"), (1, "lstm")):
        summary = json.loads((sweep / str(job) / "summary.json").read_text())
        assert summary["status"] == "completed", summary["error"]
        assert (summary["n_train"], summary["n_test"]) == (240, 80)
        assert f"name: {model}" in (sweep / str(job) / ".hydra" / "config.yaml").read_text()


def test_cds_imdb_is_the_papers_recipe(run_cfg):
    cfg = run_cfg("experiment=cds_imdb")
    assert (cfg.task.hub_id, cfg.task.max_length, cfg.task.train_split) == (
        "stanfordnlp/imdb", 256, 0.75)
    assert not cfg.task.keep_original_split
    model = cfg.model
    assert (model.name, model.num_layers, model.hidden_size, model.num_heads,
            model.intermediate_size, model.dropout) == ("bert", 1, 128, 4, 512, 0.0)
    assert (cfg.optimizer.name, cfg.optimizer.lr, list(cfg.optimizer.betas)) == (
        "adamw", 1e-3, [0.9, 0.999])
    assert (cfg.weight_decay, cfg.alpha, cfg.batch_size) == (0.01, 10.0, 128)
    # their loop: a DataLoader without shuffle, cycled; the short last batch kept; no warmup
    for preset in ("cds_imdb", "cds_yelp"):
        text = run_cfg(f"experiment={preset}")
        assert (text.sampling.name, text.sampling.shuffle, text.sampling.drop_last,
                text.optimizer.warmup_steps) == ("epoch", False, False, 0), preset
    # 28,097 kept reviews: the paper's 21,072 / 7,025 is the floor of 75 %.
    assert (math.floor(28_097 * cfg.task.train_split), 28_097 - 21_072) == (21_072, 7_025)


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_made_with_another_tokenizer(tmp_path, files):
    """tokenizer=auto picks a cached BERT tokenizer where there is one, else trains WordPiece:
    a job requeued on a node without the cache must not continue on another vocabulary."""
    from transformers import BertTokenizerFast

    words = sorted(set(POSITIVE + NEGATIVE + FILLER))
    folder = tmp_path / "tiny-bert"
    BertTokenizerFast(vocab={t: i for i, t in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}).save_pretrained(folder)
    train, test = files
    run = tmp_path / "run"
    args = ["run", "task=imdb", "model=lstm", "++model.embed_dim=16", "model.hidden_size=16",
            "model.num_layers=1", f"task.data_files.train={train}",
            f"task.data_files.test={test}", f"task.cache_dir={tmp_path / 'cache'}",
            "tokenizer=auto", f"tokenizer.name_or_path={folder}", "batch_size=32",
            "eval_every=5", "ckpt_every=5", "progress=log", f"hydra.run.dir={run}"]
    grok_here(*args, "steps=10", cwd=tmp_path, check=True)
    again = grok_here(*args, "steps=15", cwd=tmp_path)  # same node: continues
    assert again.returncode == 0, again.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["label_names"] == ["0", "1"]
    shutil.rmtree(folder)  # another node, without it: auto now trains a WordPiece
    moved = grok_here(*args, "steps=20", cwd=tmp_path)
    errors = [line for line in moved.stderr.splitlines() if line.startswith("error:")]
    assert moved.returncode == 2 and "Traceback" not in moved.stderr
    assert len(errors) == 1 and "trained on another tokenizer" in errors[0]


def test_a_checkpoint_from_before_fingerprints_resumes_with_a_warning(caplog):
    from pathlib import Path

    from grok_cli.tasks import Split, TaskData
    from grok_cli.training.checkpoint import check_tokenizer

    split = Split(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    task = TaskData(split, split, vocab_size=9, n_classes=2, tokenizer_fingerprint="abc")
    with caplog.at_level(logging.WARNING, logger="grok"):
        check_tokenizer({}, task, Path("old.pt"))
    assert "does not record its tokenizer" in caplog.text
    check_tokenizer({"tokenizer_fingerprint": "abc"}, task, Path("same.pt"))
    with pytest.raises(GrokError, match="another tokenizer"):
        check_tokenizer({"tokenizer_fingerprint": "xyz"}, task, Path("other.pt"))


@pytest.mark.parametrize("task", ["imdb", "yelp", "natural_instructions"])
def test_the_text_recipe_lives_in_one_file_and_the_command_line_wins(run_cfg, task):
    """A text task file holds only its task keys; conf/recipe/text.yaml, which every text task
    includes, is the one place that sets other groups and keys."""
    from omegaconf import OmegaConf

    from grok_cli.config import conf_dir

    path = conf_dir() / "task" / f"{task}.yaml"
    assert "@package" not in path.read_text()
    assert list(OmegaConf.load(path).defaults) == [{"/recipe": "text"}]
    cfg = run_cfg(f"task={task}")
    assert (cfg.model.name, cfg.batch_size, cfg.weight_decay) == ("bert", 128, 0.01)
    assert list(cfg.optimizer.betas) == [0.9, 0.999] and cfg.task.name == task
    assert cfg.data_fraction == 1.0
    assert run_cfg().model.name == "gpt"  # the modular default is untouched
    chosen = run_cfg(f"task={task}", "model=mlp", "batch_size=7", "weight_decay=0.5",
                     "optimizer.betas=[0.5,0.6]", "eval_every=20", "data_fraction=0.5")
    assert (chosen.model.name, chosen.batch_size, chosen.weight_decay) == ("mlp", 7, 0.5)
    assert list(chosen.optimizer.betas) == [0.5, 0.6]
    assert (chosen.eval_every, chosen.data_fraction) == (20, 0.5)
