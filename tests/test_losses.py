"""Tests of kgc.losses: hand-computed values, gradients, false-negative masking, degenerate batches.

Expected values are computed with plain Python ``math`` from the cosine scores of 2-d unit
vectors given by their angle in degrees: ``s(a, b) = cos(a − b)``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kgc.errors import KGCError
from kgc.losses import (
    LOSSES,
    ARBRegularizer,
    ContrastiveInputs,
    ContrastiveLoss,
    InfoNCELoss,
    SigmoidLoss,
    SupConLoss,
    TripletLoss,
    build_loss,
)

# ----------------------------------------------------------------------------- helpers


def unit(*degrees: float, dtype=torch.float64) -> torch.Tensor:
    """Rows (cos a, sin a) for each angle a in degrees."""
    rad = [math.radians(a) for a in degrees]
    return torch.tensor([[math.cos(r), math.sin(r)] for r in rad], dtype=dtype)


def cos_deg(a: float, b: float) -> float:
    return math.cos(math.radians(a - b))


def eye_known(b: int) -> torch.Tensor:
    return torch.eye(b, dtype=torch.bool)


def cross_entropy(logits: list[float], target: int) -> float:
    """−log softmax(logits)[target], by hand."""
    return -logits[target] + math.log(sum(math.exp(x) for x in logits))


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def approx(x: float):
    return pytest.approx(x, rel=1e-5, abs=1e-6)


# Shared 2-query example: queries at 0° and 90°, tails at 60° and 180°.
#   s00 = cos(−60°) = 0.5      s01 = cos(−180°) = −1
#   s10 = cos(30°)  = √3/2     s11 = cos(−90°)  = 0
Q_DEG, T_DEG = (0.0, 90.0), (60.0, 180.0)
S = [[cos_deg(q, t) for t in T_DEG] for q in Q_DEG]


def example(**extra) -> ContrastiveInputs:
    return ContrastiveInputs(query=unit(*Q_DEG), tails=unit(*T_DEG), batch_known=eye_known(2), **extra)


def all_losses() -> list:
    """One instance of every loss, with fixed temperatures so repeated calls agree."""
    return [
        InfoNCELoss(temperature=0.5, learn_temperature=False),
        ContrastiveLoss(margin=1.0),
        TripletLoss(margin=0.3, mining="all"),
        TripletLoss(margin=0.3, mining="hardest"),
        SigmoidLoss(temperature=3.0, bias=-1.0),
        SupConLoss(temperature=0.5, learn_temperature=False),
    ]


LOSS_IDS = ["infonce", "contrastive", "triplet-all", "triplet-hardest", "sigmoid", "supcon"]


def random_inputs(b=3, d=4, k=2, dtype=torch.float64, seed=0, requires_grad=False) -> ContrastiveInputs:
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=-1).requires_grad_(requires_grad)
    t = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=-1).requires_grad_(requires_grad)
    h = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=-1).requires_grad_(requires_grad)
    queue = F.normalize(torch.randn(k, d, generator=g, dtype=dtype), dim=-1)
    known = eye_known(b)
    known[0, 1] = True
    queue_known = torch.zeros(b, k, dtype=torch.bool)
    queue_known[1, 0] = True
    head_known = torch.zeros(b, dtype=torch.bool)
    head_known[2 % b] = True
    return ContrastiveInputs(q, t, known, heads=h, head_known=head_known, queue=queue, queue_known=queue_known)


# ----------------------------------------------------------------------------- inputs


def test_inputs_shape_checks():
    q = torch.zeros(2, 3)
    with pytest.raises(KGCError):
        ContrastiveInputs(q, torch.zeros(3, 3), eye_known(2))
    with pytest.raises(KGCError):
        ContrastiveInputs(q, q, torch.eye(2))  # not bool
    with pytest.raises(KGCError):
        ContrastiveInputs(q, q, eye_known(2), queue=torch.zeros(4, 2))
    with pytest.raises(KGCError):
        ContrastiveInputs(q, q, eye_known(2), queue=torch.zeros(4, 3), queue_known=torch.zeros(2, 5, dtype=torch.bool))


# ----------------------------------------------------------------------------- InfoNCE


def test_infonce_value_plain():
    # τ = 0.5 so logits = 2·s; margin 0, one direction only.
    # row 0: [2·0.5, 2·(−1)] = [1, −2], target 0;  row 1: [√3, 0], target 1.
    loss = InfoNCELoss(margin=0.0, temperature=0.5, learn_temperature=False, symmetric=False)
    expected = (cross_entropy([1.0, -2.0], 0) + cross_entropy([math.sqrt(3), 0.0], 1)) / 2
    assert loss(example()).item() == approx(expected)


def test_infonce_margin():
    # margin 0.1 lowers each positive logit by 0.1/τ = 0.2: rows [0.8, −2] and [√3, −0.2].
    loss = InfoNCELoss(margin=0.1, temperature=0.5, learn_temperature=False, symmetric=False)
    expected = (cross_entropy([0.8, -2.0], 0) + cross_entropy([math.sqrt(3), -0.2], 1)) / 2
    assert loss(example()).item() == approx(expected)
    no_margin = InfoNCELoss(margin=0.0, temperature=0.5, learn_temperature=False, symmetric=False)
    assert loss(example()).item() > no_margin(example()).item()


def test_infonce_prebatch_weight():
    # One queue row at 45°: s(q0, k) = cos45°, s(q1, k) = cos45°; logit = w·s/τ = w·2·cos45°.
    c45 = math.cos(math.radians(45))
    inputs = example(queue=unit(45.0))
    for w in (0.5, 1.0):
        loss = InfoNCELoss(margin=0.0, temperature=0.5, learn_temperature=False, prebatch_weight=w, symmetric=False)
        k = w * 2 * c45
        expected = (cross_entropy([1.0, -2.0, k], 0) + cross_entropy([math.sqrt(3), 0.0, k], 1)) / 2
        assert loss(inputs).item() == approx(expected)


def test_infonce_self_negatives():
    # heads at 120° and 0°: s(q0, h0) = cos(−120°) = −0.5 → logit −1;  s(q1, h1) = cos 90° = 0 → logit 0.
    inputs = example(heads=unit(120.0, 0.0))
    kw = dict(margin=0.0, temperature=0.5, learn_temperature=False, symmetric=False)
    expected = (cross_entropy([1.0, -2.0, -1.0], 0) + cross_entropy([math.sqrt(3), 0.0, 0.0], 1)) / 2
    assert InfoNCELoss(**kw)(inputs).item() == approx(expected)
    # switched off: same as without heads
    plain = (cross_entropy([1.0, -2.0], 0) + cross_entropy([math.sqrt(3), 0.0], 1)) / 2
    assert InfoNCELoss(use_self_negatives=False, **kw)(inputs).item() == approx(plain)
    # a head that is a true answer is no negative: query 1's head column disappears
    masked = example(heads=unit(120.0, 0.0), head_known=torch.tensor([False, True]))
    expected_masked = (cross_entropy([1.0, -2.0, -1.0], 0) + cross_entropy([math.sqrt(3), 0.0], 1)) / 2
    assert InfoNCELoss(**kw)(masked).item() == approx(expected_masked)


def test_infonce_symmetric():
    # Transposed block: tail 0 chooses among queries [2·s00, 2·s10] = [1, √3] (target 0);
    # tail 1 among [2·s01, 2·s11] = [−2, 0] (target 1). The margin (0.1 → −0.2) hits the diagonal.
    kw = dict(margin=0.1, temperature=0.5, learn_temperature=False)
    forward = (cross_entropy([0.8, -2.0], 0) + cross_entropy([math.sqrt(3), -0.2], 1)) / 2
    backward = (cross_entropy([0.8, math.sqrt(3)], 0) + cross_entropy([-2.0, -0.2], 1)) / 2
    assert InfoNCELoss(symmetric=True, **kw)(example()).item() == approx(forward + backward)
    # the queue and self-negative columns stay out of the transposed term
    inputs = example(queue=unit(45.0), heads=unit(120.0, 0.0))
    sym = InfoNCELoss(symmetric=True, **kw)(inputs).item()
    one_way = InfoNCELoss(symmetric=False, **kw)(inputs).item()
    assert sym - one_way == approx(backward)


def test_infonce_masks_in_batch_false_negative():
    # known[0, 1]: tail 1 is a true answer of query 0 → row 0 keeps only its gold column (CE = 0),
    # and in the transposed term tail 1 no longer sees query 0: [−0.2] alone (CE = 0).
    known = eye_known(2)
    known[0, 1] = True
    inputs = ContrastiveInputs(unit(*Q_DEG), unit(*T_DEG), known)
    loss = InfoNCELoss(margin=0.1, temperature=0.5, learn_temperature=False)
    expected = (0.0 + cross_entropy([math.sqrt(3), -0.2], 1)) / 2 + (cross_entropy([0.8, math.sqrt(3)], 0) + 0.0) / 2
    assert loss(inputs).item() == approx(expected)


def test_infonce_temperature_parameter():
    frozen = InfoNCELoss(temperature=0.05, learn_temperature=False)
    assert frozen.tau.log_inv_t.requires_grad is False
    assert frozen.temperature == pytest.approx(0.05)
    learnt = InfoNCELoss(temperature=0.05)
    assert learnt.tau.log_inv_t.requires_grad is True
    learnt(random_inputs()).backward()
    assert learnt.tau.log_inv_t.grad is not None and torch.isfinite(learnt.tau.log_inv_t.grad)
    # 1/τ is capped at 100
    with torch.no_grad():
        learnt.tau.log_inv_t.fill_(math.log(1000.0))
    learnt(random_inputs())
    assert learnt.temperature == pytest.approx(0.01)
    with pytest.raises(KGCError):
        InfoNCELoss(temperature=0.001)


# ----------------------------------------------------------------------------- ContrastiveLoss


def test_contrastive_value():
    # Unit vectors: D² = 2 − 2s.  Positives: D00² = 2 − 1 = 1, D11² = 2 − 0 = 2 → ½·mean = 0.75.
    # Negatives (m = 1): (0,1) s = −1, D = 2 → 0;  (1,0) s = √3/2, D = sqrt(2 − √3) ≈ 0.5176
    #   → ½·(1 − 0.5176)²; negative mean over the 2 pairs.
    d10 = math.sqrt(2 - math.sqrt(3))
    expected = 0.5 * (1 + 2) / 2 + 0.5 * ((1 - d10) ** 2 + 0.0) / 2
    assert ContrastiveLoss(margin=1.0)(example()).item() == approx(expected)


def test_contrastive_queue_and_self():
    # Queue row at 45°: D² = 2 − 2cos45° for both queries; heads at 120°, 0°: D² = 3 and 2.
    # Negative pairs: (0,1), (1,0), 2 queue pairs, 2 self pairs → mean over 6.
    c45 = math.cos(math.radians(45))
    d10 = math.sqrt(2 - math.sqrt(3))
    dk = math.sqrt(2 - 2 * c45)
    neg = [0.0, (1 - d10) ** 2, (1 - dk) ** 2, (1 - dk) ** 2, 0.0, 0.0]  # D = √3, √2 ≥ m give 0
    expected = 0.75 + 0.5 * sum(neg) / 6
    inputs = example(queue=unit(45.0), heads=unit(120.0, 0.0))
    assert ContrastiveLoss(margin=1.0)(inputs).item() == approx(expected)


# ----------------------------------------------------------------------------- TripletLoss


def test_triplet_value():
    # B = 3: queries at 0°, 90°, 180°; tails at 60°, 180°, 270°.
    # s = [[0.5, −1, 0], [√3/2, 0, −1], [−0.5, 1, 0]]  (s02 = cos(−270°) = 0, s20 = cos 120°, s21 = 1)
    qd, td = (0.0, 90.0, 180.0), (60.0, 180.0, 270.0)
    s = [[cos_deg(a, b) for b in td] for a in qd]
    m = 0.3
    hinges = {(i, j): max(0.0, m + s[i][j] - s[i][i]) for i in range(3) for j in range(3) if i != j}
    # by hand: (0,1) 0.3−1−0.5<0 → 0; (0,2) 0.3+0−0.5<0 → 0; (1,0) 0.3+0.866 = 1.166; (1,2) 0;
    #          (2,0) 0.3−0.5 <0 → 0; (2,1) 0.3+1−0 = 1.3
    assert hinges[(1, 0)] == approx(0.3 + math.sqrt(3) / 2) and hinges[(2, 1)] == approx(1.3)
    inputs = ContrastiveInputs(unit(*qd), unit(*td), eye_known(3))
    assert TripletLoss(margin=m, mining="all")(inputs).item() == approx((1.3 + 0.3 + math.sqrt(3) / 2) / 6)
    # hardest: row 0 → max(0, 0.3 + 0 − 0.5) = 0; row 1 → 1.166; row 2 → 1.3
    hardest = TripletLoss(margin=m, mining="hardest")(inputs)
    assert hardest.item() == approx((0 + 0.3 + math.sqrt(3) / 2 + 1.3) / 3)
    with pytest.raises(KGCError):
        TripletLoss(mining="semi-hard")


# ----------------------------------------------------------------------------- SigmoidLoss


def test_sigmoid_value():
    # z = 3·s − 1;  L = −(1/B)·Σ log σ(label·z), label +1 on the diagonal, −1 elsewhere.
    z = [[3 * S[i][j] - 1 for j in range(2)] for i in range(2)]
    total = log_sigmoid(z[0][0]) + log_sigmoid(-z[0][1]) + log_sigmoid(-z[1][0]) + log_sigmoid(z[1][1])
    loss = SigmoidLoss(temperature=3.0, bias=-1.0)
    assert loss(example()).item() == approx(-total / 2)
    assert loss.scale == pytest.approx(3.0)
    # known false negative (0, 1) leaves the sum; queue row at 45° and heads add negative columns
    known = eye_known(2)
    known[0, 1] = True
    inputs = ContrastiveInputs(unit(*Q_DEG), unit(*T_DEG), known, queue=unit(45.0), heads=unit(120.0, 0.0))
    zk = 3 * math.cos(math.radians(45)) - 1
    zh = [3 * (-0.5) - 1, 3 * 0.0 - 1]
    total = (log_sigmoid(z[0][0]) + log_sigmoid(-z[1][0]) + log_sigmoid(z[1][1])
             + 2 * log_sigmoid(-zk) + log_sigmoid(-zh[0]) + log_sigmoid(-zh[1]))
    assert loss(inputs).item() == approx(-total / 2)


def test_sigmoid_parameters_learnable_or_frozen():
    loss = SigmoidLoss()
    assert loss.log_scale.item() == pytest.approx(math.log(10.0)) and loss.bias.item() == pytest.approx(-10.0)
    loss(random_inputs()).backward()
    assert loss.log_scale.grad is not None and loss.bias.grad is not None
    frozen = SigmoidLoss(learnable=False)
    assert not frozen.log_scale.requires_grad and not frozen.bias.requires_grad


# ----------------------------------------------------------------------------- SupConLoss


def test_supcon_value_multiple_positives():
    # τ = 0.5 → logits 2s.  known[0,1]: query 0 has positives {t0, t1}.
    # L0 = −½·[(1 − lse(1, −2)) + (−2 − lse(1, −2))];  L1 = −(0 − lse(√3, 0)).
    known = eye_known(2)
    known[0, 1] = True
    inputs = ContrastiveInputs(unit(*Q_DEG), unit(*T_DEG), known)
    lse0 = math.log(math.exp(1) + math.exp(-2))
    lse1 = math.log(math.exp(math.sqrt(3)) + 1)
    expected = (-0.5 * ((1 - lse0) + (-2 - lse0)) + lse1) / 2
    loss = SupConLoss(temperature=0.5, learn_temperature=False)
    assert loss(inputs).item() == approx(expected)


def test_supcon_queue_positive_and_known_head_excluded():
    # Queue row at 45° (logit 2cos45° = √2) known for query 1; heads at 120°, 0° (logits −1, 0),
    # query 0's head is a true answer → left out of query 0's row entirely.
    r2 = math.sqrt(2)
    inputs = example(queue=unit(45.0), queue_known=torch.tensor([[False], [True]]),
                     heads=unit(120.0, 0.0), head_known=torch.tensor([True, False]))
    lse0 = math.log(math.exp(1) + math.exp(-2) + math.exp(r2))
    lse1 = math.log(math.exp(math.sqrt(3)) + math.exp(0) + math.exp(r2) + math.exp(0))
    l0 = -(1 - lse0)
    l1 = -0.5 * ((0 - lse1) + (r2 - lse1))
    loss = SupConLoss(temperature=0.5, learn_temperature=False)
    assert loss(inputs).item() == approx((l0 + l1) / 2)


def test_supcon_equals_infonce_with_single_answers():
    inputs = random_inputs()
    inputs.batch_known = eye_known(3)
    inputs.queue_known = None
    inputs.head_known = None
    sup = SupConLoss(temperature=0.2, learn_temperature=False)(inputs)
    nce = InfoNCELoss(margin=0.0, temperature=0.2, learn_temperature=False, prebatch_weight=1.0, symmetric=False)
    nce = nce(inputs)
    assert sup.item() == approx(nce.item())


# ----------------------------------------------------------------------------- all losses


@pytest.mark.parametrize("loss", all_losses(), ids=LOSS_IDS)
def test_gradcheck(loss):
    inputs = random_inputs(requires_grad=True)
    q, t, h = inputs.query, inputs.tails, inputs.heads

    def f(q, t, h):
        return loss(ContrastiveInputs(q, t, inputs.batch_known, heads=h, head_known=inputs.head_known,
                                      queue=inputs.queue, queue_known=inputs.queue_known))

    assert torch.autograd.gradcheck(f, (q, t, h), eps=1e-6, atol=1e-5)


def masked_pair_inputs(phi_deg: float, known_01: bool) -> ContrastiveInputs:
    """B = 3, d = 4, where only s(q0, t1) depends on phi (every norm and every other pair is fixed).

    q0 = (0.2, r·cosφ, 0, r·sinφ) with r = √0.96, t1 = (0, 1, 0, 0), everything else in dims {0, 2}:
    s(q0, t1) = r·cosφ (≈ 0.98 at φ = 0, ≈ −0.98 at φ = 180°); ‖q0 − t1‖ moves with it, nothing else.
    """
    r, phi = math.sqrt(0.96), math.radians(phi_deg)

    def in_02(a):
        return [math.cos(math.radians(a)), 0.0, math.sin(math.radians(a)), 0.0]

    q0 = [0.2, r * math.cos(phi), 0.0, r * math.sin(phi)]
    q = torch.tensor([q0, in_02(100), in_02(200)], dtype=torch.float64)
    t = torch.tensor([in_02(30), [0.0, 1.0, 0.0, 0.0], in_02(250)], dtype=torch.float64)
    known = eye_known(3)
    known[0, 1] = known_01
    return ContrastiveInputs(q, t, known)


@pytest.mark.parametrize("loss", all_losses(), ids=LOSS_IDS)
def test_known_false_negative_is_masked(loss):
    high, low = masked_pair_inputs(0.0, True), masked_pair_inputs(180.0, True)
    if isinstance(loss, SupConLoss):
        # a known answer is a positive: raising its score lowers the loss
        assert loss(high).item() < loss(low).item() - 1e-3
        return
    assert loss(high).item() == pytest.approx(loss(low).item(), abs=1e-12)
    # sanity: unmasked, the same change does move the loss
    unmasked_high, unmasked_low = masked_pair_inputs(0.0, False), masked_pair_inputs(180.0, False)
    assert abs(loss(unmasked_high).item() - loss(unmasked_low).item()) > 1e-3


@pytest.mark.parametrize("loss", all_losses(), ids=LOSS_IDS)
def test_known_queue_rows_and_heads_are_masked(loss):
    base = random_inputs()
    q, t = base.query, base.tails
    b = q.shape[0]
    plain = ContrastiveInputs(q, t, base.batch_known)
    # queue rows and heads equal to the queries (score 1, distance 0) but all known to be true answers
    everything = torch.ones(b, dtype=torch.bool)
    with_known = ContrastiveInputs(q, t, base.batch_known, heads=q.clone(), head_known=everything,
                                   queue=q.clone(), queue_known=torch.ones(b, b, dtype=torch.bool))
    if isinstance(loss, SupConLoss):
        # known queue rows are positives; the known heads are dropped → compare with queue only
        only_queue = ContrastiveInputs(q, t, base.batch_known, queue=q.clone(), queue_known=with_known.queue_known)
        assert loss(with_known).item() == pytest.approx(loss(only_queue).item(), abs=1e-12)
        return
    assert loss(with_known).item() == pytest.approx(loss(plain).item(), abs=1e-12)


def degenerate_cases():
    q = F.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64), dim=-1)
    t = F.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64), dim=-1)
    ones = torch.ones(3, 3, dtype=torch.bool)
    return {
        "batch-of-1": dict(query=q[:1], tails=t[:1], batch_known=eye_known(1)),
        "batch-of-1-with-extras": dict(query=q[:1], tails=t[:1], batch_known=eye_known(1), heads=t[:1].flip(1),
                                       queue=t[1:], queue_known=None),
        "all-known": dict(query=q, tails=t, batch_known=ones),
        "everything-masked": dict(query=q, tails=t, batch_known=ones, heads=t.flip(1),
                                  head_known=torch.ones(3, dtype=torch.bool), queue=t.flip(0),
                                  queue_known=torch.ones(3, 3, dtype=torch.bool)),
        "identical-embeddings": dict(query=q[:1].repeat(3, 1), tails=q[:1].repeat(3, 1), batch_known=eye_known(3)),
    }


@pytest.mark.parametrize("case", list(degenerate_cases()))
@pytest.mark.parametrize("loss", all_losses(), ids=LOSS_IDS)
def test_degenerate_batches_are_finite(loss, case):
    fields = {k: (v.clone().requires_grad_(True) if k in ("query", "tails") else v)
              for k, v in degenerate_cases()[case].items()}
    value = loss(ContrastiveInputs(**fields))
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    for k in ("query", "tails"):
        assert fields[k].grad is not None and torch.isfinite(fields[k].grad).all()


@pytest.mark.parametrize("loss", all_losses(), ids=LOSS_IDS)
def test_bf16_inputs_are_computed_in_float32(loss):
    inputs = random_inputs(dtype=torch.float32)
    bf = ContrastiveInputs(inputs.query.bfloat16(), inputs.tails.bfloat16(), inputs.batch_known,
                           heads=inputs.heads.bfloat16(), head_known=inputs.head_known,
                           queue=inputs.queue.bfloat16(), queue_known=inputs.queue_known)
    value = loss(bf)
    assert value.dtype == torch.float32 and torch.isfinite(value)


@pytest.mark.parametrize("loss", all_losses(), ids=LOSS_IDS)
def test_autocast_does_not_lower_precision(loss):
    inputs = random_inputs(dtype=torch.float32)
    reference = loss(inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(inputs)
    assert value.dtype == torch.float32 and value.item() == pytest.approx(reference.item(), rel=1e-6)


# ----------------------------------------------------------------------------- ARB


def test_arb_value_2x2():
    # Q = I (queries at 0°, 90°) → B(Q) = I.  T rows at 0°, 60°: T = [[1, 0], [0.5, √3/2]], det > 0, so
    # its nearest orthogonal matrix is the rotation R(θ) with θ = atan2(c − b, a + d) = atan2(0.5, 1 + √3/2).
    # ‖Q − R‖² = ‖I − R‖² = 4 − 4cosθ;  ‖T − I‖² = 0.5² + (√3/2 − 1)² = 2 − √3;  N = 2.
    theta = math.atan2(0.5, 1 + math.sqrt(3) / 2)
    expected = 0.1 * ((4 - 4 * math.cos(theta)) / 2 + (2 - math.sqrt(3)) / 2)
    value = ARBRegularizer(weight=0.1)(unit(0.0, 90.0), unit(0.0, 60.0))
    assert value.item() == approx(expected)


def test_arb_gradient_treats_bases_as_constants():
    # d/dQ [w·‖Q − B(T)‖²/N] = 2w(Q − B(T))/N; B(Q) is detached so the second term gives nothing.
    g = torch.Generator().manual_seed(3)
    q = F.normalize(torch.randn(3, 5, generator=g, dtype=torch.float64), dim=-1).requires_grad_(True)
    t = F.normalize(torch.randn(3, 5, generator=g, dtype=torch.float64), dim=-1).requires_grad_(True)
    ARBRegularizer(weight=0.5)(q, t).backward()
    u, _, vh = torch.linalg.svd(t.detach(), full_matrices=False)
    assert torch.allclose(q.grad, 2 * 0.5 * (q.detach() - u @ vh) / 3)
    u, _, vh = torch.linalg.svd(q.detach(), full_matrices=False)
    assert torch.allclose(t.grad, 2 * 0.5 * (t.detach() - u @ vh) / 3)


@pytest.mark.parametrize("case", ["n1", "duplicates", "zeros", "bf16"])
def test_arb_degenerate(case):
    g = torch.Generator().manual_seed(4)
    base = F.normalize(torch.randn(4, 3, generator=g), dim=-1)
    q, t = {
        "n1": (base[:1], base[1:2]),
        "duplicates": (base[:1].repeat(4, 1), base[1:2].repeat(4, 1)),  # rank 1
        "zeros": (torch.zeros(4, 3), base),
        "bf16": (base.bfloat16(), base.flip(0).bfloat16()),
    }[case]
    q, t = q.clone().requires_grad_(True), t.clone().requires_grad_(True)
    value = ARBRegularizer(weight=0.1)(q, t)
    assert torch.isfinite(value) and value.dtype == torch.float32
    value.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(t.grad).all()
    if case == "n1":
        # B(z) = z/‖z‖ = z for unit rows: 0.1·(‖q − t‖² + ‖t − q‖²)
        assert value.item() == approx(0.1 * 2 * ((base[0] - base[1]) ** 2).sum().item())


def test_arb_weight_zero_and_negative():
    q = unit(0.0, 90.0)
    assert ARBRegularizer(weight=0.0)(q, q).item() == 0.0
    with pytest.raises(KGCError):
        ARBRegularizer(weight=-1.0)


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_round_trip():
    assert set(LOSSES) == {"infonce", "contrastive", "triplet", "sigmoid", "supcon"}
    for name, cls in LOSSES.items():
        loss = build_loss(name)
        assert isinstance(loss, cls)
        again = build_loss(name, **loss.get_config_dict())
        assert again.get_config_dict() == loss.get_config_dict()
        doc = cls.__doc__
        assert "Source:" in doc and "Formula:" in doc and "Example::" in doc
    assert build_loss("InfoNCE", margin=0.1).margin == 0.1
    assert ARBRegularizer(weight=0.2).get_config_dict() == {"weight": 0.2}


def test_registry_errors():
    with pytest.raises(KGCError) as err:
        build_loss("cosine")
    for name in LOSSES:
        assert name in str(err.value)
    with pytest.raises(KGCError) as err:
        build_loss("triplet", temperature=0.1)
    assert "temperature" in str(err.value) and "margin" in str(err.value)
    with pytest.raises(KGCError):
        build_loss("contrastive", margin="wide")
