"""The two encoders (spec §2): the only modules that run at inference.

Both share one head over their fragments (``EmbeddingHead``): fragment Transformer, pooling and the
gated fusion with the projected frozen global embedding. The image encoder feeds it the projected
regions; the text encoder the backbone's projected word features (aahr.text: a local
BERT-family model or a BiGRU over a word vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from aahr.model.fusion import GatedFusion, GlobalProjection
from aahr.model.layers import FragmentProjection, FragmentTransformer, l2n
from aahr.model.pooling import AttentionPooling, GPOPooling, MaxKPooling

POOLINGS = ("aahr", "gpo")


@dataclass
class Encoded:
    """What one encoder returns for a batch of B samples."""

    fragments: torch.Tensor   # B x L x E projected fragments, before the fragment Transformer
    mask: torch.Tensor        # B x L valid fragments
    local: torch.Tensor       # B x E v_loc (the local view, not normalised)
    embedding: torch.Tensor   # B x E the retrieval embedding (fused, or l2n(v_loc) without global view)

    def map(self, fn) -> "Encoded":
        return Encoded(**{f.name: fn(f.name, getattr(self, f.name)) for f in fields(self)})


class EmbeddingHead(nn.Module):
    """Fragments -> (v_loc, fused embedding). Switches: ``fragment_transformer``, ``pooling``
    (``aahr`` = MaxK + global-queried attention, ``gpo`` = VSE-infinity's GPO) and ``global_branch``.

    Without the global branch, the attention pooling's query is a learned vector (there is no
    global embedding to ask with) and the embedding is l2n(v_loc).
    """

    def __init__(self, model_cfg: dict, switches: dict, global_dim: int | None):
        super().__init__()
        e = model_cfg["embed_size"]
        self.pooling, self.beta = switches["pooling"], model_cfg["beta"]
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r} (known: {', '.join(POOLINGS)})")
        # the unmasked attention pooling (a QUIRK kept on request) reads the padded slots' outputs
        padded_read = self.pooling == "aahr" and not model_cfg["mask_attention_padding"]
        self.transformer = (FragmentTransformer(e, model_cfg["fragment_heads"], model_cfg["fragment_ff"],
                                                model_cfg["dropout"], valid_only=not padded_read)
                            if switches["fragment_transformer"] else None)
        if self.pooling == "aahr":
            self.maxk = MaxKPooling(model_cfg["maxk"])
            self.attention = AttentionPooling(e, model_cfg["pool_heads"], model_cfg["mask_attention_padding"])
        else:
            self.gpo = GPOPooling(model_cfg["gpo_dim"], model_cfg["gpo_dim"])
        if switches["global_branch"]:
            if global_dim is None:
                raise ValueError("the global branch needs the global embedding size")
            self.global_proj = GlobalProjection(global_dim, e)
            self.fusion = GatedFusion(e)
        else:
            self.global_proj = None
            if self.pooling == "aahr":
                self.query = nn.Parameter(torch.randn(e) / e ** 0.5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, global_emb: torch.Tensor | None) -> Encoded:
        """x: B x L x E projected fragments, mask: B x L, global_emb: B x Dg (or None)."""
        h = self.transformer(x, mask) if self.transformer is not None else x     # B x L x E
        g = self.global_proj(global_emb) if self.global_proj is not None else None  # B x E
        if self.pooling == "aahr":
            v_res = self.maxk(x, mask)                                              # B x E
            query = g if g is not None else self.query.expand(x.shape[0], -1)
            v_att = self.attention(h, mask, query)                                  # B x E
            local = self.beta * v_res + (1 - self.beta) * v_att
        else:
            local = self.gpo(h, mask)                                               # B x E
        embedding = self.fusion(local, g) if g is not None else l2n(local)
        return Encoded(fragments=x, mask=mask, local=local, embedding=embedding)


class ImageEncoder(nn.Module):
    """Region features (B x K x D) + frozen global image embedding -> Encoded."""

    def __init__(self, region_dim: int, global_dim: int | None, model_cfg: dict, switches: dict):
        super().__init__()
        self.project = FragmentProjection(region_dim, model_cfg["embed_size"])
        self.head = EmbeddingHead(model_cfg, switches, global_dim)

    def forward(self, regions: torch.Tensor, mask: torch.Tensor, global_emb: torch.Tensor | None = None) -> Encoded:
        return self.head(self.project(regions, mask), mask, global_emb)


class TextEncoder(nn.Module):
    """Caption tokens -> backbone word features (already projected to E, aahr.text) ->
    the same head as the image encoder. ``tokens`` are the backbone's keyword arguments
    (BiGRU: ids, lengths; BERT: input_ids, attention_mask)."""

    def __init__(self, backbone: nn.Module, global_dim: int | None, model_cfg: dict, switches: dict):
        super().__init__()
        self.backbone = backbone
        self.head = EmbeddingHead(model_cfg, switches, global_dim)

    def forward(self, tokens: dict, global_emb: torch.Tensor | None = None) -> Encoded:
        words, mask = self.backbone(**tokens)                                       # B x L x E, B x L
        return self.head(words, mask.bool(), global_emb)
