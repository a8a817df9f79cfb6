"""The AAHR model: shapes, every loss term on hand-computed tiny cases, and one switch per module."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from aahr.model.aahr import AAHR, LOSS_TERMS, build_model
from aahr.model.layers import MaskedBatchNorm1d, l2n
from aahr.model.losses import distance_weights, triplet_loss
from aahr.model.moco import KeyQueue, MomentumEncoders, masked_info_nce
from aahr.model.pooling import AttentionPooling, GPOPooling, MaxKPooling
from aahr.model.prototypes import Prototypes, sinkhorn
from aahr.model.fusion import GlobalProjection
from aahr.model.relation import DenseGCN, RelationGraph, fine_grained_similarity, intra_correlation, top_share

from tiny_features import GLOBAL_DIM, REGION_DIM, REGIONS, tiny_train_params

VOCAB = 30


def tiny_model(variant: str = "aahr", **losses) -> AAHR:
    params = tiny_train_params()
    for k, v in losses.items():
        params["losses"][k] = v
    torch.manual_seed(0)
    return build_model(params, variant, REGION_DIM, GLOBAL_DIM, VOCAB)


def tiny_batch(b: int = 8, length: int = 7, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, length + 1, (b,), generator=g)
    lengths[0] = length
    ids = torch.randint(2, VOCAB, (b, length), generator=g) * (torch.arange(length)[None] < lengths[:, None])
    mask = torch.rand(b, REGIONS, generator=g) > 0.3
    mask[:, 0] = True
    img_ids = torch.arange(b) // 2                               # two captions of each image
    return {"regions": torch.randn(b, REGIONS, REGION_DIM, generator=g), "region_mask": mask,
            "tokens": {"ids": ids, "lengths": lengths},
            "global_img": l2n(torch.randn(b, GLOBAL_DIM, generator=g)),
            "global_txt": l2n(torch.randn(b, GLOBAL_DIM, generator=g)), "img_ids": img_ids}


# ------------------------------------------------------------------------------------- shapes


def test_encoders_and_training_step_shapes():
    model, b = tiny_model(), tiny_batch()
    e = tiny_train_params()["model"]["embed_size"]
    out = model(b)
    assert out.img.fragments.shape == (8, REGIONS, e) and out.img.mask.shape == (8, REGIONS)
    assert out.txt.fragments.shape == (8, 7, e) and out.txt.mask.shape == (8, 7)
    for enc in (out.img, out.txt):
        assert enc.local.shape == (8, e) and enc.embedding.shape == (8, e)
        # the fused vector is a convex combination of two unit vectors: norm <= 1, not re-normalised
        assert (enc.embedding.norm(dim=1) <= 1 + 1e-5).all()
    assert out.img_keys.shape == (8, e) and torch.allclose(out.img_keys.norm(dim=1), torch.ones(8))
    terms = model.loss_terms(out, iteration=10 ** 6, epoch=5, steps_per_epoch=10)
    assert set(terms) == set(LOSS_TERMS) and all(t.shape == () for t in terms.values())
    sum(terms.values()).backward()
    assert model.relation.joint_gcn.linear.weight.grad is not None
    assert model.prototypes.weight.grad is not None
    assert model.image.project.fc.weight.grad.abs().sum() > 0
    # the momentum encoders never receive gradients
    assert all(p.grad is None and not p.requires_grad for p in model.momentum.parameters())


def test_inference_embeddings_ignore_padding_and_dot_product_is_the_similarity():
    model, b = tiny_model(), tiny_batch()
    model.eval()
    with torch.no_grad():
        t1 = model.encode_texts(b["tokens"], b["global_txt"]).embedding
        longer = {"ids": torch.cat([b["tokens"]["ids"], torch.randint(2, VOCAB, (8, 3))], 1),
                  "lengths": b["tokens"]["lengths"]}
        t2 = model.encode_texts(longer, b["global_txt"]).embedding
        regions = b["regions"].clone()
        regions[~b["region_mask"]] = 1e3
        v1 = model.encode_images(b["regions"], b["region_mask"], b["global_img"]).embedding
        v2 = model.encode_images(regions, b["region_mask"], b["global_img"]).embedding
    assert torch.allclose(t1, t2, atol=1e-5) and torch.allclose(v1, v2, atol=1e-5)


# ------------------------------------------------------------------------------------ pooling


def test_maxk_averages_the_top_two_valid_values_and_ignores_padding():
    x = torch.tensor([[[1.0, 5.0], [3.0, 2.0], [100.0, 100.0]],
                      [[4.0, -1.0], [50.0, 50.0], [60.0, 60.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out = MaxKPooling(2)(x, mask)
    assert torch.allclose(out, torch.tensor([[2.0, 3.5], [4.0, -1.0]]))  # k shrinks to 1 valid fragment


def test_attention_pooling_gives_padding_zero_weight_unless_the_quirk_is_kept():
    torch.manual_seed(0)
    x, query = torch.randn(2, 5, 16), torch.randn(2, 16)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    noisy = x.clone()
    noisy[~mask] = 7.0
    fixed = AttentionPooling(16, 4, mask_padding=True)
    w = fixed.weights(x, mask, query)
    assert torch.all(w[0, :, 3:] == 0) and torch.allclose(w.sum(-1), torch.ones(2, 4))
    assert torch.allclose(fixed(x, mask, query), fixed(noisy, mask, query), atol=1e-6)
    quirk = AttentionPooling(16, 4, mask_padding=False)
    quirk.load_state_dict(fixed.state_dict())
    assert not torch.allclose(quirk(x, mask, query)[0], quirk(noisy, mask, query)[0], atol=1e-3)


def test_gpo_pooling_ignores_padding_and_region_holes():
    torch.manual_seed(0)
    gpo = GPOPooling(8, 8)
    x = torch.randn(2, 4, 6)
    mask = torch.tensor([[True, False, True, True], [True, True, False, False]])
    noisy = x.clone()
    noisy[~mask] = 50.0
    assert torch.allclose(gpo(x, mask), gpo(noisy, mask), atol=1e-6)
    # a hole in the middle pools like the same fragments packed at the front
    packed = torch.zeros_like(x[:1])
    packed[0, :3] = x[0, mask[0]]
    assert torch.allclose(gpo(x[:1], mask[:1]), gpo(packed, torch.tensor([[True, True, True, False]])), atol=1e-6)


def test_masked_batchnorm_matches_batchnorm_on_the_valid_fragments_only():
    torch.manual_seed(0)
    x = torch.randn(10, 4) * 3 + 1
    ours, ref = MaskedBatchNorm1d(4), nn.BatchNorm1d(4)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)
    assert torch.allclose(ours.running_mean, ref.running_mean) and torch.allclose(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


# ------------------------------------------------------------------------------ triplet loss

S = torch.tensor([[0.9, 0.8, 0.1],
                  [0.2, 0.7, 0.6],
                  [0.5, 0.3, 0.4]])


def sims_as_embeddings(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """img = I, txt = S^T so that img @ txt^T = S."""
    return torch.eye(s.shape[0]), s.T.clone()


def test_triplet_hardest_and_mean_on_a_hand_computed_case():
    img, txt = sims_as_embeddings(S)
    ids = torch.tensor([0, 1, 2])
    # rows: 0.1 + 0.1 + 0.3; columns: 0 + 0.3 + 0.4
    assert triplet_loss(img, txt, ids, 0.2, "hardest").item() == pytest.approx(1.2)
    # mean over negatives: rows 0.05 + 0.05 + 0.2, columns 0 + 0.15 + 0.2
    assert triplet_loss(img, txt, ids, 0.2, "mean").item() == pytest.approx(0.65)


def test_the_false_negatives_a_loss_used_are_counted_per_sampling():
    img, txt = sims_as_embeddings(S)
    ids = torch.tensor([0, 1, 2])
    # image 0 truly matches caption 1 too (an extended positive): the hardest negative of image 0's
    # row is caption 1 (0.8), and of caption 1's column it is image 0 (0.8)
    truth = torch.eye(3, dtype=torch.bool)
    truth[0, 1] = True
    counts = []
    loss = triplet_loss(img, txt, ids, 0.2, "hardest", truth=truth, counts=counts)
    assert loss.item() == pytest.approx(1.2)                            # counting changes nothing
    assert counts == [(6, 2)]                                           # 3 + 3 negatives used, 2 false
    counts = []
    triplet_loss(img, txt, ids, 0.2, "mean", truth=truth, counts=counts)
    # mean: every negative with an active hinge is used (rows: 1 + 1 + 2, columns: 0 + 1 + 1)
    assert counts == [(6, 2)]
    counts = []
    triplet_loss(img, txt, ids, 0.5, "mean", truth=truth, counts=counts)
    assert counts == [(9, 2)]                                           # margin 0.5: all but three are active
    counts = []
    triplet_loss(img, txt, ids, 0.2, "distance_weighted", torch.Generator().manual_seed(0), {"cutoff": 2.0},
                 truth=truth, counts=counts)
    assert counts[0][0] == 6 and 0 <= counts[0][1] <= 2
    counts = []
    triplet_loss(img, txt, ids, 0.2, "hardest", counts=counts)
    assert counts == []                                                 # nothing known: nothing counted


def test_captions_of_the_same_image_are_positives_not_negatives():
    img, txt = sims_as_embeddings(S)
    # pairs 0 and 1 show the same image: (0,1) and (1,0) become positive pairs (anchors), never negatives
    ids = torch.tensor([0, 0, 2])
    # rows: 0 + (0.6 + 0.1) + 0.3; columns: 0.5 + 0 + 0.4
    assert triplet_loss(img, txt, ids, 0.2, "hardest").item() == pytest.approx(1.9)


def test_distance_weights_follow_wu_et_al_and_zero_positives_and_far_negatives():
    s = torch.tensor([[0.95, 0.2, -0.1, -0.6, 0.3]])
    positives = torch.tensor([[True, False, False, False, True]])
    w = distance_weights(s, ~positives, dim=512, min_distance=0.5, cutoff=1.7)[0]
    dist = np.sqrt(2 - 2 * np.array([0.2, -0.1]))
    log_w = (2 - 512) * np.log(dist) - (509 / 2) * np.log(1 - dist ** 2 / 4)
    expected = np.exp(log_w - log_w.max()) / np.exp(log_w - log_w.max()).sum()
    assert w[0] == 0 and w[4] == 0                      # positives
    assert w[3] == 0                                    # dist sqrt(3.2) = 1.79 >= cutoff 1.7
    assert np.allclose(w[1:3].numpy(), expected, rtol=1e-4)


def test_distance_weighted_sampling_never_picks_a_positive(monkeypatch):
    torch.manual_seed(0)
    b = 12
    ids = torch.arange(b) // 3                          # three captions per image
    img = l2n(torch.randn(b, 16))
    txt = l2n(img + 0.3 * torch.randn(b, 16))           # positives similar: likely picked if allowed
    picked = []
    real = torch.multinomial

    def spy(weights, n, **kw):
        out = real(weights, n, **kw)
        picked.append(out.squeeze(1))
        return out

    monkeypatch.setattr(torch, "multinomial", spy)
    positives = ids[:, None] == ids[None, :]
    anchors = positives.nonzero(as_tuple=True)[0]
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        triplet_loss(img, txt, ids, 0.2, "distance_weighted", gen, {"cutoff": 2.0})
    assert len(picked) == 40
    for neg in picked:                                  # both directions: positives are symmetric
        assert not positives[anchors, neg].any()


# ------------------------------------------------------------------------------- prototypes


def test_sinkhorn_gives_unit_rows_and_an_equal_partition_over_prototypes():
    torch.manual_seed(0)
    scores = torch.randn(12, 4)
    q = sinkhorn(scores, 0.1, 3)
    assert torch.allclose(q.sum(1), torch.ones(12), atol=1e-5)
    q = sinkhorn(scores, 0.1, 200)
    assert torch.allclose(q.sum(0), torch.full((4,), 3.0), atol=1e-3)   # B / K each
    assert torch.allclose(sinkhorn(torch.zeros(6, 3)), torch.full((6, 3), 1 / 3))
    # the codes follow the scores: argmax agrees where the partition allows
    assert (sinkhorn(torch.eye(4) * 5).argmax(1) == torch.arange(4)).all()


def test_swapped_prediction_on_a_hand_computed_case():
    proto = Prototypes(2, 2, epsilon=0.1, iterations=3, temperature=0.1)
    with torch.no_grad():
        proto.weight.copy_(torch.eye(2) * 3)            # re-normalised to the unit rows at each step
    x = torch.eye(2)                                    # image and text embeddings both [[1,0],[0,1]]
    a = math.exp(10) / (math.exp(10) + 1)               # the Sinkhorn code and the softmax are both [a, 1-a]
    entropy = -(a * math.log(a) + (1 - a) * math.log(1 - a))
    assert proto.loss(x, x).item() == pytest.approx(2 * entropy, rel=1e-4)
    assert torch.allclose(proto.weight, torch.eye(2))


# ------------------------------------------------------------------------------------- MoCo


def test_info_nce_with_the_queue_masks_entries_of_the_same_image():
    t = 0.5
    q, k = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8]])
    queue = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    queue_ids, qid = torch.tensor([7, 3, 3]), torch.tensor([7])
    masked = masked_info_nce(q, k, queue, qid, queue_ids, t, mask_same_image=True).item()
    assert masked == pytest.approx(-math.log(math.exp(0.6 / t) / (math.exp(0.6 / t) + 1 + math.exp(-1 / t))), rel=1e-5)
    unmasked = masked_info_nce(q, k, queue, qid, queue_ids, t, mask_same_image=False).item()
    assert unmasked == pytest.approx(-math.log(math.exp(0.6 / t) / (math.exp(0.6 / t) + math.exp(1 / t) + 1
                                                                   + math.exp(-1 / t))), rel=1e-5)


def test_key_queue_is_fifo_and_fills():
    queue = KeyQueue(4, 2)
    queue.enqueue(torch.ones(2, 2), torch.tensor([1, 2]))
    assert not queue.full
    queue.enqueue(2 * torch.ones(2, 2), torch.tensor([3, 4]))
    assert queue.full and queue.ids.tolist() == [1, 2, 3, 4]
    queue.enqueue(3 * torch.ones(2, 2), torch.tensor([5, 6]))  # the oldest two are replaced
    assert queue.ids.tolist() == [5, 6, 3, 4] and queue.keys[0, 0] == 3
    with pytest.raises(ValueError, match="does not divide"):
        queue.enqueue(torch.ones(3, 2), torch.tensor([1, 2, 3]))


def test_momentum_update_is_an_exponential_moving_average():
    torch.manual_seed(0)
    image, text = nn.Linear(3, 2), nn.Linear(2, 2)
    ema = MomentumEncoders(image, text, momentum=0.9)
    before = ema.image.weight.clone()
    with torch.no_grad():
        image.weight.add_(1.0)
    ema.update(image, text)
    assert torch.allclose(ema.image.weight, 0.9 * before + 0.1 * image.weight)
    assert torch.allclose(ema.text.weight, text.weight)           # unchanged online -> unchanged copy
    assert not ema.image.weight.requires_grad


def test_moco_term_waits_for_a_full_queue_and_enqueues_the_global_batch():
    model = tiny_model()                                          # queue 32, batch 8 -> full after 4 steps
    values = []
    for step in range(5):
        out = model(tiny_batch(seed=step))
        values.append(model.loss_terms(out, 0, 0, 10)["moco"].item())
    assert values[:4] == [0.0] * 4 and values[4] > 0
    assert model.image_queue.full and model.text_queue.ids[:8].tolist() == tiny_batch()["img_ids"].tolist()


# ---------------------------------------------------------------------------------- relation


def test_connectivity_keeps_the_top_half_of_each_row():
    torch.manual_seed(0)
    scores = torch.randn(5, 8)
    keep = top_share(scores, 0.5)
    assert (keep.sum(1) == 4).all()
    assert torch.equal(keep, scores >= scores.topk(4, dim=1).values[:, -1:])
    ties = top_share(torch.tensor([[1.0, 1.0, 1.0, 0.0]]), 0.5)        # ties at the threshold are kept
    assert ties.tolist() == [[True, True, True, False]]


def test_relation_graph_adjacency_blocks():
    model = tiny_model()
    out = model(tiny_batch())
    v_hat, t_hat = l2n(out.img.local), l2n(out.txt.local)
    a, c = model.relation.adjacency(v_hat, t_hat, out.img.fragments, out.img.mask, out.txt.fragments, out.txt.mask)
    assert a.shape == c.shape == (16, 16)
    for block in (c[:8, :8], c[:8, 8:], c[8:, :8], c[8:, 8:]):
        assert (block.sum(1) >= 4).all()                                # top 50% of 8, ties kept
    assert c[:8, :8].diagonal().all() and c[8:, 8:].diagonal().all()  # every node keeps itself
    assert torch.allclose(a[:8, :8], torch.exp(-torch.cdist(v_hat, v_hat)), atol=1e-3)


def test_intra_correlation_is_exp_minus_distance():
    x = l2n(torch.randn(6, 5))
    assert torch.allclose(intra_correlation(x), torch.exp(-torch.cdist(x, x)), atol=1e-3)


def test_fine_grained_similarity_hand_case_ignores_padding():
    regions = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])     # third region is padding
    region_mask = torch.tensor([[True, True, False]])
    words = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [-5.0, 3.0]]])       # third word is padding
    word_mask = torch.tensor([[True, True, False]])
    i2t, t2i = fine_grained_similarity(regions, region_mask, words, word_mask)
    c = 1 / math.sqrt(2)
    sim = np.array([[1.0, 0.0], [c, c]])                               # words x regions cosines (all >= 0)
    by_words = sim / np.linalg.norm(sim, axis=0, keepdims=True)         # t2i: normalised over words
    by_regions = sim / np.linalg.norm(sim, axis=1, keepdims=True)       # i2t: normalised over regions
    assert t2i.item() == pytest.approx(by_words.max(1).mean(), rel=1e-5)
    assert i2t.item() == pytest.approx(by_regions.max(0).mean(), rel=1e-5)


def test_dense_gcn_equals_torch_geometric_gcnconv_without_normalisation():
    gnn = pytest.importorskip("torch_geometric.nn")
    torch.manual_seed(0)
    n, d = 10, 6
    a = torch.rand(n, n)                                               # dense, as the authors' relevance
    x = torch.randn(n, d)
    dense = DenseGCN(d, dropout=0.0)
    conv = gnn.GCNConv(d, d, add_self_loops=False, normalize=False)
    with torch.no_grad():
        conv.lin.weight.copy_(dense.linear.weight)
        conv.bias.copy_(torch.randn(d))
        dense.bias.copy_(conv.bias)
    tgt, src = a.nonzero(as_tuple=True)                                # row i aggregates from j: edge j -> i
    ref = conv(x, torch.stack([src, tgt]), a[tgt, src])
    assert torch.allclose(dense.propagate(x, a), ref, atol=1e-5)


def test_dense_gcn_hand_case_is_the_unnormalised_dense_product():
    gcn = DenseGCN(2, dropout=0.0, slope=0.2)
    with torch.no_grad():
        gcn.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        gcn.bias.copy_(torch.tensor([0.5, 0.0]))
    a = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    h = torch.tensor([[1.0, 1.0], [2.0, 0.5]])
    # A (h W^T) + b = [[1*1 + 2*2, -(1*1 + 2*0.5)], [3*2, -(3*0.5)]] + [0.5, 0]
    expected = torch.tensor([[5.5, -2.0 * 0.2], [6.5, -1.5 * 0.2]])   # LeakyReLU(0.2) on the negatives
    assert torch.allclose(gcn(h, a), expected)
    assert torch.equal(gcn.bias.data, torch.tensor([0.5, 0.0])) and DenseGCN(4).bias.abs().sum() == 0


def test_relation_gcns_use_the_dense_matrix_and_add_the_normalised_joint_output():
    torch.manual_seed(0)
    b, e = 4, 8
    rel = RelationGraph(e, heads=2, ff=8, dropout=0.0, gcn_dropout=0.0).eval()
    v_hat, t_hat = l2n(torch.randn(b, e)), l2n(torch.randn(b, e))
    frags, mask = torch.randn(b, 3, e), torch.ones(b, 3, dtype=torch.bool)
    seen = {}
    rel.transformer.register_forward_pre_hook(lambda _m, args: seen.setdefault("h", args[0][0].detach()))
    health = {}
    rel(v_hat, t_hat, frags, mask, frags, mask, health)
    a, c = rel.adjacency(v_hat, t_hat, frags, mask, frags, mask)
    x = torch.cat([v_hat, t_hat])
    h = torch.cat([rel.image_gcn(x[:b], a[:b, :b]), rel.text_gcn(x[b:], a[b:, b:])])
    expected = l2n(rel.joint_gcn(h, a)) + x                            # no top-share mask, no D^-1/2 A D^-1/2
    assert torch.allclose(seen["h"], expected, atol=1e-5)
    assert health["graph_density"] == pytest.approx(float(c.float().mean()))


def test_attention_pooling_heads_are_independent_full_width_and_averaged():
    torch.manual_seed(0)
    e, h = 6, 3
    pool = AttentionPooling(e, h, mask_padding=True)
    x, query = torch.randn(2, 4, e), torch.randn(2, e)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    out = pool(x, mask, query)
    # by hand: head j has its own full-width Q_j, K_j, V_j; cosine over all e dims; outputs averaged
    wq, bq = pool.q.weight.view(h, e, e), pool.q.bias.view(h, e)
    wk, bk = pool.k.weight.view(h, e, e), pool.k.bias.view(h, e)
    heads = []
    for j in range(h):
        q = query @ wq[j].T + bq[j]                                     # 2 x e
        k = x @ wk[j].T + bk[j]                                         # 2 x 4 x e
        v = x @ pool.v_weight[j].T + pool.v_bias[j]                     # 2 x 4 x e
        score = torch.nn.functional.cosine_similarity(k, q[:, None], dim=-1).masked_fill(~mask, -torch.inf)
        heads.append((score.softmax(-1)[..., None] * v).sum(1))
    assert torch.allclose(out, torch.stack(heads).mean(0), atol=1e-5)


def test_global_projection_is_two_summed_linears_with_zero_bias_and_moves_twice_as_fast():
    torch.manual_seed(0)
    proj = GlobalProjection(5, 7)
    assert [type(m).__name__ for m in proj.children()] == ["Linear", "Linear"]        # the authors' FC_MLP
    assert proj.first.bias.abs().sum() == 0 and proj.second.bias.abs().sum() == 0
    g1, g2 = torch.randn(3, 5), torch.randn(3, 5)
    assert torch.allclose(proj(g1 + 2 * g2), proj(g1) + 2 * proj(g2) - proj(torch.zeros(1, 5)), atol=1e-5)  # affine
    assert proj.first.weight.abs().max() <= math.sqrt(6 / (5 + 7))     # each Xavier-uniform
    # one AdamW step moves each Linear by about lr: the map (their sum) moves by about 2 lr
    before = (proj.first.weight + proj.second.weight).detach().clone()
    opt = torch.optim.AdamW(proj.parameters(), lr=1e-3, weight_decay=0.0)
    proj(g1).sum().backward()
    opt.step()
    moved = (proj.first.weight + proj.second.weight).detach() - before
    assert moved.abs().max().item() == pytest.approx(2e-3, rel=1e-3)


# ---------------------------------------------------------------------------------- switches


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("variant, missing_term, gone", [
    ("no_gnn", "relation", "relation"),
    ("no_proto", "prototypes", "prototypes"),
    ("no_moco", "moco", "momentum"),
    ("no_global", None, None),
    ("gpo", None, None),
])
def test_each_switch_removes_its_module_and_its_loss_term(variant, missing_term, gone):
    full, ablated = tiny_model("aahr"), tiny_model(variant)
    assert n_params(ablated) < n_params(full)
    b = tiny_batch()
    terms = set(ablated.loss_terms(ablated(b), 10 ** 6, 5, 10))
    assert terms < set(LOSS_TERMS) or variant == "no_global"
    if missing_term:
        assert terms == set(LOSS_TERMS) - {missing_term} and getattr(ablated, gone) is None
    if variant == "no_global":
        assert ablated.image.head.global_proj is None and ablated.text.head.global_proj is None
        assert terms == set(LOSS_TERMS)
        # without the global view no global input is read
        b.pop("global_img"), b.pop("global_txt")
        ablated(b)
    if variant == "gpo":
        assert terms == {"triplet"} and ablated.image.head.transformer is None
        assert hasattr(ablated.image.head, "gpo") and not hasattr(ablated.image.head, "attention")


def test_warmups_switch_terms_on_at_their_iterations():
    model = tiny_model()       # relation warm-up 0.2 epoch, prototypes 0.1 epoch; 10 steps per epoch
    b = tiny_batch()
    at = {it: model.loss_terms(model(b), it, 0, 10) for it in (0, 1, 2)}
    assert at[0]["relation"].item() == 0 and at[0]["prototypes"].item() == 0
    assert at[1]["prototypes"].item() == 0                               # on when it > 1 (strictly)
    assert at[2]["relation"].item() > 0 and at[2]["prototypes"].item() > 0   # relation on when it >= 2


def test_fine_grained_similarity_equals_the_masked_reference_on_a_random_batch():
    torch.manual_seed(1)
    bi, bt, k, length, e = 5, 6, 4, 7, 8
    regions, words = torch.randn(bi, k, e), torch.randn(bt, length, e)
    region_mask = torch.rand(bi, k) > 0.3
    region_mask[:, 0] = True
    word_mask = torch.arange(length)[None] < torch.randint(1, length + 1, (bt,))[:, None]
    i2t, t2i = fine_grained_similarity(regions, region_mask, words, word_mask, chunk=2)
    # the definition, pair by pair, on the valid fragments only
    for a in range(bi):
        for b in range(bt):
            r, w = l2n(regions[a][region_mask[a]]), l2n(words[b][word_mask[b]])
            sim = torch.nn.functional.leaky_relu(w @ r.T, 0.1)                   # words x regions
            t2i_ref = (sim / sim.norm(dim=0, keepdim=True)).amax(1).mean()
            i2t_ref = (sim / sim.norm(dim=1, keepdim=True)).amax(0).mean()
            assert t2i[b, a].item() == pytest.approx(t2i_ref.item(), abs=1e-5)
            assert i2t[a, b].item() == pytest.approx(i2t_ref.item(), abs=1e-5)


def test_fragment_transformer_on_valid_fragments_equals_the_whole_layer_and_zeroes_padding():
    from aahr.model.layers import FragmentTransformer

    torch.manual_seed(0)
    x = torch.randn(6, 7, 16)
    mask = torch.arange(7)[None] < torch.tensor([7, 1, 3, 5, 2, 6])[:, None]
    fast = FragmentTransformer(16, 2, 32, 0.1).eval()
    whole = FragmentTransformer(16, 2, 32, 0.1, valid_only=False).eval()
    whole.load_state_dict(fast.state_dict())
    out, ref = fast(x, mask), whole(x, mask)
    assert torch.allclose(out[mask], ref[mask], atol=1e-5)
    assert out[~mask].abs().max().item() == 0.0
    # the unmasked attention pooling (the authors' QUIRK) reads padded slots: the whole layer runs
    params = tiny_train_params()
    for masked in (True, False):
        params["model"]["mask_attention_padding"] = masked
        model = build_model(params, "aahr", REGION_DIM, GLOBAL_DIM, VOCAB)
        assert model.text.head.transformer.valid_only is masked
        assert model.image.head.transformer.valid_only is masked


def test_a_training_step_matches_the_unoptimised_reference_forms(monkeypatch):
    """The fast paths (the attention scores split into a small product and the K norms of the valid
    fragments; the fine-grained similarity without masking passes; the fragment Transformer's
    per-fragment parts on the valid fragments) give one step's loss terms and gradients of the
    direct forms, on a fixed batch. Dropout is 0 here: the valid-only Transformer draws fewer dropout
    masks, so with dropout on the two forms are equal in distribution, not draw for draw."""
    import aahr.model.relation as relation
    from aahr.model.layers import FragmentTransformer

    def dense_weights(self, x, mask, query):                            # every fragment, then masked
        b, length, e = x.shape
        q = l2n(self.q(query).view(b, self.heads, e))
        k = l2n(self.k(x).view(b, length, self.heads, e))
        return torch.einsum("blhe,bhe->bhl", k, q).masked_fill(~mask[:, None, :], -torch.inf).softmax(-1)

    def reference_similarity(regions, region_mask, words, word_mask, chunk=32):
        i2t, t2i = torch.zeros(len(regions), len(words)), torch.zeros(len(words), len(regions))
        for a in range(len(regions)):
            for b in range(len(words)):
                r, w = l2n(regions[a][region_mask[a]].float()), l2n(words[b][word_mask[b]].float())
                sim = torch.nn.functional.leaky_relu(w @ r.T, 0.1)
                t2i[b, a] = (sim / sim.norm(dim=0, keepdim=True).clamp_min(1e-12)).amax(1).mean()
                i2t[a, b] = (sim / sim.norm(dim=1, keepdim=True).clamp_min(1e-12)).amax(0).mean()
        return i2t, t2i

    def one_step(whole_layer: bool = False):
        model = tiny_model()
        for m in model.modules():
            if isinstance(m, FragmentTransformer):
                m.valid_only = not whole_layer                          # every slot, padding included
            if isinstance(m, nn.Dropout):
                m.p = 0.0
            if isinstance(m, nn.MultiheadAttention):
                m.dropout = 0.0
        torch.manual_seed(5)
        out = model(tiny_batch())
        terms = model.loss_terms(out, 10 ** 6, 5, 10, torch.Generator().manual_seed(0))
        sum(terms.values()).backward()
        return ({k: v.item() for k, v in terms.items()},
                {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})

    fast_terms, fast_grads = one_step()
    monkeypatch.setattr(AttentionPooling, "weights", dense_weights)
    monkeypatch.setattr(relation, "fine_grained_similarity", reference_similarity)
    ref_terms, ref_grads = one_step(whole_layer=True)
    assert fast_terms == pytest.approx(ref_terms, rel=1e-5, abs=1e-6)
    assert fast_grads.keys() == ref_grads.keys()
    for name, g in fast_grads.items():
        diff, size = (g - ref_grads[name]).norm().item(), ref_grads[name].norm().item()
        assert diff <= 2e-4 * size + 1e-5, (name, diff, size)           # float32 summation order only
