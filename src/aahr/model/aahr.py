"""AAHR: the two encoders plus the training-only modules, each behind one switch (spec §3, §5).

    L = L_trip(v, t)                                                     # always on
      + [it >= W_rel]  (L_trip(v_hat, t_tilde) + L_trip(v_tilde, t_hat) + L_trip(v_tilde, t_tilde))
      + [it >  W_proto] w_proto L_proto(v, t)
      + [queue full]   w_moco  L_moco

Switches (``params.yaml: variants``): ``global_branch`` (frozen global view + gated fusion),
``relation`` (batch relation graph + GNN), ``prototypes``, ``moco`` (momentum encoders + queues),
``pooling`` (``aahr`` MaxK + attention, ``gpo``) and ``fragment_transformer``. A module switched off
is not built at all: no parameters, no loss term.

A training step is split in two so that data parallelism is exact: ``forward`` encodes the local
batch (and computes the momentum keys), the trainer all-gathers the result, and ``loss_terms`` runs
on the global batch (aahr.training.distributed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from aahr.health import gate_health, key as hkey, mean_pairwise_cosine, rowwise_cosine
from aahr.model.encoders import Encoded, ImageEncoder, TextEncoder
from aahr.model.layers import l2n
from aahr.model.losses import triplet_loss
from aahr.model.moco import KeyQueue, MomentumEncoders, masked_info_nce
from aahr.model.prototypes import Prototypes
from aahr.model.relation import RelationGraph

SWITCHES = ("global_branch", "relation", "prototypes", "moco", "pooling", "fragment_transformer")
LOSS_TERMS = ("triplet", "relation", "prototypes", "moco")


@dataclass
class StepOutput:
    """The per-process part of a training step; gathered over processes before the losses."""

    img: Encoded
    txt: Encoded
    img_ids: torch.Tensor               # B image index of each pair (captions of one image share it)
    img_keys: torch.Tensor | None       # B x E momentum image keys (unit, no gradient)
    txt_keys: torch.Tensor | None       # B x E momentum text keys (unit, no gradient)
    cap_ids: torch.Tensor | None = None  # B caption index of each pair (the false-negative count)


def warmup_iterations(epochs: float, steps_per_epoch: int) -> int:
    """A warm-up given in epochs (so it scales with the dataset) -> optimizer steps."""
    return int(round(epochs * steps_per_epoch))


class AAHR(nn.Module):
    def __init__(self, *, region_dim: int, global_dim: int | None, text_backbone: nn.Module,
                 model_cfg: dict, loss_cfg: dict, switches: dict):
        super().__init__()
        self.switches = dict(switches)
        self.loss_cfg = loss_cfg
        e = model_cfg["embed_size"]
        self.uses_global = bool(switches["global_branch"])
        self.image = ImageEncoder(region_dim, global_dim, model_cfg, switches)
        self.text = TextEncoder(text_backbone, global_dim, model_cfg, switches)
        rel = loss_cfg["relation"]
        self.relation = (RelationGraph(e, rel["heads"], model_cfg["fragment_ff"], model_cfg["dropout"],
                                       rel["gcn_dropout"], rel["keep"], rel["lambda"])
                         if switches["relation"] else None)
        pro = loss_cfg["prototypes"]
        self.prototypes = (Prototypes(pro["count"], e, pro["epsilon"], pro["sinkhorn_iterations"],
                                      pro["temperature"])
                           if switches["prototypes"] else None)
        moco = loss_cfg["moco"]
        if switches["moco"]:
            self.momentum = MomentumEncoders(self.image, self.text, moco["momentum"])
            self.image_queue = KeyQueue(moco["queue_size"], e)
            self.text_queue = KeyQueue(moco["queue_size"], e)
        else:
            self.momentum = self.image_queue = self.text_queue = None

    # ------------------------------------------------------------------ inference (the encoders)

    def encode_images(self, regions: torch.Tensor, mask: torch.Tensor, global_img: torch.Tensor | None = None) -> Encoded:
        return self.image(regions, mask, global_img if self.uses_global else None)

    def encode_texts(self, tokens: dict, global_txt: torch.Tensor | None = None) -> Encoded:
        return self.text(tokens, global_txt if self.uses_global else None)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of a pretrained text backbone (optimised at ``text_lr_factor`` x lr)."""
        inner = getattr(self.text.backbone, "backbone", None)                    # BertTextEncoder's HF model
        return [p for p in inner.parameters() if p.requires_grad] if isinstance(inner, nn.Module) else []

    # ------------------------------------------------------------------ training

    def forward(self, batch: dict) -> StepOutput:
        """Encode the local batch; with MoCo, first update the momentum encoders, then compute keys."""
        g_img, g_txt = batch.get("global_img"), batch.get("global_txt")
        img = self.encode_images(batch["regions"], batch["region_mask"], g_img)
        txt = self.encode_texts(batch["tokens"], g_txt)
        img_keys = txt_keys = None
        if self.momentum is not None:
            self.momentum.update(self.image, self.text)
            with torch.no_grad():
                img_keys = l2n(self.momentum.image(batch["regions"], batch["region_mask"],
                                                   g_img if self.uses_global else None).embedding.float())
                txt_keys = l2n(self.momentum.text(batch["tokens"],
                                                  g_txt if self.uses_global else None).embedding.float())
        return StepOutput(img, txt, batch["img_ids"], img_keys, txt_keys, batch.get("cap_ids"))

    def sampling(self, epoch: int) -> str:
        """The triplet terms' negative sampling at ``epoch`` (counted from 0): ``losses.sampling``, with
        the hinge averaged over all negatives (``mean``) during the hardest negative's warm-up."""
        lc = self.loss_cfg
        if lc["sampling"] == "hardest" and epoch < lc["hardest_warmup_epochs"]:
            return "mean"
        return lc["sampling"]

    def loss_terms(self, out: StepOutput, iteration: int, epoch: int, steps_per_epoch: int,
                   generator: torch.Generator | None = None, health: dict | None = None,
                   truth: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The weighted loss terms on the (global) batch; their sum is the training loss. A term is
        present iff its module is on; it is 0 until its warm-up is over (or its queue is full).
        With MoCo, the batch's keys are enqueued afterwards. ``health``, when given, receives the
        modules' health metrics as ``health/{module}/{metric}`` (aahr.health; no gradient); with
        ``truth`` (B x B bool, image i truly matches caption j), also the share of the negatives each
        ranking term used that are in fact positives (``health/{term}/false_negatives``)."""
        lc = self.loss_cfg
        sampling = self.sampling(epoch)
        dws = {"dim": lc["dws_dim"], "min_distance": lc["dws_min_distance"], "cutoff": lc["dws_cutoff"]}

        counts: dict[str, list] = {"triplet": [], "relation": []}     # (negatives used, false ones)
        if health is None:
            truth = None

        def trip(a: torch.Tensor, b: torch.Tensor, term: str = "triplet") -> torch.Tensor:
            return triplet_loss(a, b, out.img_ids, lc["margin"], sampling, generator, dws, truth, counts[term])

        img, txt = out.img, out.txt
        zero = img.embedding.new_zeros((), dtype=torch.float32)
        terms = {"triplet": trip(img.embedding, txt.embedding)}
        measured: dict[str, dict] = {}
        if self.relation is not None:
            terms["relation"] = zero
            rel = measured["relation"] = {} if health is not None else None
            v_hat, t_hat = l2n(img.local.float()), l2n(txt.local.float())
            if iteration >= warmup_iterations(lc["relation"]["warmup_epochs"], steps_per_epoch):
                v_tilde, t_tilde = self.relation(v_hat, t_hat, img.fragments.detach(), img.mask,
                                                 txt.fragments.detach(), txt.mask, rel)
                terms["relation"] = (trip(v_hat, t_tilde, "relation") + trip(v_tilde, t_hat, "relation")
                                     + trip(v_tilde, t_tilde, "relation"))
                if rel is not None:
                    rel["tilde_hat_cosine"] = (rowwise_cosine(v_tilde, v_hat) + rowwise_cosine(t_tilde, t_hat)) / 2
            if rel is not None:
                rel["local_cosine"] = (mean_pairwise_cosine(v_hat) + mean_pairwise_cosine(t_hat)) / 2
        if self.prototypes is not None:
            pro = lc["prototypes"]
            terms["prototypes"] = zero
            codes = measured["prototypes"] = {} if health is not None else None
            if iteration > warmup_iterations(pro["warmup_epochs"], steps_per_epoch):
                terms["prototypes"] = pro["weight"] * self.prototypes.loss(img.embedding, txt.embedding, codes)
            elif codes is not None:
                with torch.no_grad():
                    self.prototypes.loss(img.embedding, txt.embedding, codes)   # codes measured before the warm-up
        if self.momentum is not None:
            moco = lc["moco"]
            terms["moco"] = zero
            ranks = [] if health is not None else None
            if self.image_queue.full and self.text_queue.full:
                q_img, q_txt = l2n(img.local.float()), l2n(txt.local.float())
                terms["moco"] = moco["weight"] * (
                    masked_info_nce(q_img, out.txt_keys, self.text_queue.keys.clone(), out.img_ids,
                                    self.text_queue.ids.clone(), moco["temperature"], moco["mask_same_image"],
                                    ranks)
                    + masked_info_nce(q_txt, out.img_keys, self.image_queue.keys.clone(), out.img_ids,
                                      self.image_queue.ids.clone(), moco["temperature"], moco["mask_same_image"],
                                      ranks))
            if ranks:
                measured["moco"] = {k: sum(r[k] for r in ranks) / len(ranks) for k in ranks[0]}
            self.image_queue.enqueue(out.img_keys, out.img_ids)
            self.text_queue.enqueue(out.txt_keys, out.img_ids)
        if health is not None:
            for term, pairs in counts.items():
                if pairs and sum(n for n, _ in pairs):
                    measured.setdefault(term, {})["false_negatives"] = (sum(f for _, f in pairs)
                                                                        / sum(n for n, _ in pairs))
            if self.uses_global:
                measured["fusion"] = gate_health(torch.cat([e.head.fusion.last_gate.flatten()
                                                            for e in (self.image, self.text)]))
            health.update({hkey(m, k): v for m, metrics in measured.items() for k, v in (metrics or {}).items()})
        return terms


def build_model(params: dict, variant: str, region_dim: int, global_dim: int | None,
                vocab_size: int | None = None) -> AAHR:
    """The model of ``params.yaml: variants[variant]`` for the given feature sizes."""
    from aahr.text import build_text_encoder

    switches = {k: v for k, v in params["variants"][variant].items() if k in SWITCHES}
    backbone = build_text_encoder(params["text"], vocab_size, out_dim=params["model"]["embed_size"])
    return AAHR(region_dim=region_dim, global_dim=global_dim if switches["global_branch"] else None,
                text_backbone=backbone, model_cfg=params["model"], loss_cfg=params["losses"], switches=switches)
