"""The `tokenizer` config group: bert-base-uncased (`bert`), a WordPiece vocabulary trained here
(`wordpiece`), or the first that is available (`auto`).

Every choice ends as a `tokenizers.Tokenizer` (the Rust backend that BertTokenizerFast wraps
too) that adds `[CLS] … [SEP]` and neither truncates nor pads: the text task measures each
text's length to apply `task.max_length`, and pads the kept texts itself.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from omegaconf import DictConfig
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import WordPieceTrainer

from grok_cli import registry
from grok_cli.errors import GrokError, check
from grok_cli.hub import hub_reachable
from grok_cli.io import write_text

log = logging.getLogger("grok")

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # BERT's names and roles


def fingerprint(tokenizer: Tokenizer) -> str:
    """A hash of the whole tokenizer (vocabulary, normalizer, post-processor): a cache key."""
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()


def texts_hash(texts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def build_tokenizer(cfg: DictConfig, train_texts: Sequence[str], cache_dir: Path) -> Tokenizer:
    """The tokenizer of `cfg` (the `tokenizer` group): the function its `_target_` names
    (`auto`, `bert`, `wordpiece` below; for a record written before `_target_`, its name's)."""
    registry.check("tokenizer", cfg)  # a shipped name goes with its own function
    return registry.build("tokenizer", cfg, train_texts, cache_dir)


def auto(cfg: DictConfig, train_texts: Sequence[str], cache_dir: Path) -> Tokenizer:
    """tokenizer=auto: `bert` when it loads, else `wordpiece`; the log says which."""
    tokenizer = pretrained(cfg.name_or_path)
    if tokenizer is not None:
        return tokenizer
    log.info("tokenizer: %s is not available offline; training a WordPiece vocabulary "
             "on the training texts instead (tokenizer=wordpiece)", cfg.name_or_path)
    return wordpiece(cfg, train_texts, cache_dir)


def bert(cfg: DictConfig, train_texts: Sequence[str], cache_dir: Path) -> Tokenizer:
    """tokenizer=bert: the pretrained tokenizer `name_or_path`, or one error line."""
    tokenizer = pretrained(cfg.name_or_path)
    if tokenizer is None:
        raise GrokError(
            f"tokenizer.name_or_path={cfg.name_or_path!r} could not be loaded from a local "
            "folder, the HF cache or the hub (unreachable or unknown); point "
            "tokenizer.name_or_path at a saved tokenizer folder, or use tokenizer=wordpiece")
    return tokenizer


def wordpiece(cfg: DictConfig, train_texts: Sequence[str], cache_dir: Path) -> Tokenizer:
    """tokenizer=wordpiece: a vocabulary trained on the training texts."""
    return train_wordpiece(train_texts, cfg.vocab_size, cfg.min_frequency, cache_dir)


def pretrained(name_or_path: str) -> Tokenizer | None:
    """`load_pretrained`, logged when it loads."""
    tokenizer = load_pretrained(name_or_path)
    if tokenizer is not None:
        log.info("tokenizer: %s (pretrained, %d tokens)", name_or_path,
                 tokenizer.get_vocab_size())
    return tokenizer


def load_pretrained(name_or_path: str) -> Tokenizer | None:
    """A saved fast tokenizer from a folder, the HF cache, or the hub when it answers."""
    from transformers import AutoTokenizer  # slow import: only when a pretrained one is asked

    attempts = [True] if Path(name_or_path).exists() or not hub_reachable() else [True, False]
    for local_only in attempts:
        try:
            wrapper = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_only)
        except (OSError, ValueError):
            continue
        backend = getattr(wrapper, "backend_tokenizer", None)
        if backend is None:
            raise GrokError(f"tokenizer.name_or_path={name_or_path!r} has no fast (Rust) "
                            "tokenizer; use a tokenizer.json-based one or tokenizer=wordpiece")
        tokenizer = Tokenizer.from_str(backend.to_str())  # a copy: settings below stay ours
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer
    return None


def train_wordpiece(texts: Sequence[str], vocab_size: int, min_frequency: int,
                    cache_dir: Path) -> Tokenizer:
    """A BERT-style uncased WordPiece vocabulary trained on `texts`, cached by content hash."""
    check(isinstance(vocab_size, int) and vocab_size > len(SPECIAL_TOKENS),
          "tokenizer.vocab_size", vocab_size, f"an integer > {len(SPECIAL_TOKENS)}")
    key = texts_hash(texts)[:20]
    path = cache_dir / "tokenizers" / f"wordpiece-{vocab_size}-{min_frequency}-{key}.json"
    if path.exists():
        tokenizer = Tokenizer.from_file(str(path))
        log.info("tokenizer: wordpiece from cache %s (%d tokens)", path,
                 tokenizer.get_vocab_size())
        return tokenizer
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                               special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer.decoder = decoders.WordPiece()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, tokenizer.to_str(pretty=True))  # what tokenizer.save writes, atomically
    log.info("tokenizer: wordpiece trained on %d texts (%d tokens), saved to %s", len(texts),
             tokenizer.get_vocab_size(), path)
    return tokenizer
