"""The AAHR model (spec §2-3), one idea per module, read top-down:

- ``layers``: L2 normalisation, the masked (and data-parallel) BatchNorm, the fragment projection
  (Linear + MLP residual) and the fragment Transformer layer.
- ``pooling``: MaxK (v_res), the global-queried multi-head attention pooling (v_att) and GPO
  (the VSE-infinity baseline's pooling).
- ``fusion``: the projected frozen global view and the gated local/global fusion.
- ``encoders``: the image and text encoders (the only parts that run at inference).
- ``losses``: the triplet ranking loss with distance-weighted sampling / hardest / mean negatives.
- ``relation``: correlation matrices, connectivity, image/text/joint GCN and the relation-biased
  Transformer over the batch graph (training only).
- ``prototypes``: SwAV-style dynamic clustering prototypes (Sinkhorn codes, swapped prediction).
- ``moco``: momentum encoders, FIFO key queues and the same-image-masked InfoNCE.
- ``aahr``: the model that assembles these by switches (one switch per ablation row).
"""
