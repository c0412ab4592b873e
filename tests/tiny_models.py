"""Tiny randomly initialised Hugging Face models, saved to a folder, for driving the real loading code."""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("good great happy love nice bad sad awful hate terrible okay fine neutral the a is it this that "
         "i you we they and or not very so day food movie music rt http co").split()


def tiny_text_model(path: Path, seed: int = 0) -> Path:
    """A 2-layer BERT with hidden size 32 and a word-level vocab, saved with its tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz0123456789"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(path / "vocab.txt"))  # transformers 5 ignores ``vocab_file=``
    assert tokenizer.convert_tokens_to_ids("good") == vocab.index("good")
    tokenizer.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(path)
    return path


def tiny_image_model(path: Path, seed: int = 0) -> Path:
    """A 2-stage ResNet (8 and 16 channels) with its image processor at 32x32."""
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(cfg).save_pretrained(path)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(path)
    return path
