"""An encoder classifier from HF BertConfig (Critical Data Size paper, IMDB / Yelp / NI)."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from transformers import BertConfig, BertForSequenceClassification

from grok_cli.models.base import GrokModel, Hook, blocks_mlp, hook_input, hook_output
from grok_cli.models.checks import check_positions, check_transformer_shape
from grok_cli.tasks import TaskData


class EncoderClassifier(GrokModel):
    """BERT encoder + its pooler and classification head, returning logits only.

    On a modular task (kind "lm") it classifies the answer from the pooled first position,
    which attends to every input token.
    """

    def __init__(self, bert: BertForSequenceClassification) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.bert(input_ids=x, attention_mask=mask).logits

    def weights(self) -> dict[str, torch.Tensor]:
        return {"embed": self.bert.bert.embeddings.word_embeddings.weight,
                "unembed": self.bert.classifier.weight.T}  # on the pooled first position

    def activations(self) -> dict[str, Hook]:
        return blocks_mlp(self.bert.bert.encoder.layer, lambda layer: {
            "in": hook_input(layer.intermediate),
            "hidden": hook_output(layer.intermediate),  # dense, then the activation
            "out": hook_output(layer.output.dense)})


def check_config(cfg: DictConfig) -> None:
    check_transformer_shape(cfg)


def bert_config(cfg: DictConfig, task: TaskData) -> BertConfig:
    check_positions(cfg, task)
    return BertConfig(
        vocab_size=task.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        # Unset: BERT's 4 × hidden. The CDS presets pin the paper's 512, which its model-wise
        # configs keep at other widths too (their hidden-16 config has 512).
        intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
        hidden_act=cfg.activation,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
        classifier_dropout=cfg.dropout,
        max_position_embeddings=cfg.max_positions,
        initializer_range=cfg.initializer_range,
        num_labels=task.n_classes,
    )


def build_bert(cfg: DictConfig, task: TaskData) -> EncoderClassifier:
    return EncoderClassifier(BertForSequenceClassification(bert_config(cfg, task)))
