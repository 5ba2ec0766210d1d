"""The InfoGAN objective: non-saturating GAN loss and the mutual-information lower bound.

``L_I = H(c) + E[log Q(c|x)]``.  For categorical codes E[log Q] is minus the
cross-entropy; for continuous codes it is a factored Gaussian log-likelihood.
We minimise the negative log-likelihood terms; L_I is reported alongside.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .attributes import ink, second_moments
from .latent import LatentBatch, LatentSpec

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[log D(x)] - E[log(1 - D(G(z)))], on logits for numerical stability."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -E[log D(G(z))]."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@dataclass
class InfoTerms:
    cat_nll: torch.Tensor   # sum over categorical codes of mean cross-entropy (nats)
    cont_nll: torch.Tensor  # sum over continuous codes of mean Gaussian NLL (nats)


def info_nll(spec: LatentSpec, q_out: torch.Tensor, codes: LatentBatch) -> InfoTerms:
    logits, mean, log_std = spec.split_q(q_out.float())
    zero = q_out.new_zeros((), dtype=torch.float32)
    cat = sum((F.cross_entropy(lg, codes.cat[:, i]) for i, lg in enumerate(logits)), zero)
    if spec.continuous:
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        z = (codes.cont - mean) * torch.exp(-log_std)
        cont = (_HALF_LOG_2PI + log_std + 0.5 * z * z).mean(0).sum()
    else:
        cont = zero
    return InfoTerms(cat, cont)


def mutual_info_lower_bound(spec: LatentSpec, terms: InfoTerms) -> tuple[float, float]:
    """(L_I for categorical codes, L_I for continuous codes) in nats."""
    return (spec.entropy_categorical - float(terms.cat_nll),
            spec.entropy_continuous - float(terms.cont_nll))



def real_code_entropy_gap(spec: LatentSpec, q_out_real: torch.Tensor) -> torch.Tensor:
    """Sum over categorical codes of H(c) - I(x; c_hat) estimated on a batch of real images:
    KL(mean_x Q(c|x) || uniform) + mean_x H(Q(c|x)). Zero iff Q assigns real images
    confidently and the batch's code usage matches the uniform prior."""
    logits, _, _ = spec.split_q(q_out_real.float())
    total = q_out_real.new_zeros((), dtype=torch.float32)
    for k, lg in zip(spec.categorical, logits):
        log_p = lg.log_softmax(1)
        p = log_p.exp()
        marginal = p.mean(0)
        balance = (marginal * (marginal.clamp_min(1e-12) * k).log()).sum()
        confidence = -(p * log_p).sum(1).mean()
        total = total + balance + confidence
    return total


def paired_code_information_gap(spec: LatentSpec, q_out_a: torch.Tensor, q_out_b: torch.Tensor) -> torch.Tensor:
    """Sum over categorical codes of H(c) - I(c_hat(x); c_hat(warp(x))) on a real batch: the
    code Q reads from an image must be the one it reads from a warped copy, and all values
    must be used (the joint of the two predictions is estimated from the batch)."""
    la, _, _ = spec.split_q(q_out_a.float())
    lb, _, _ = spec.split_q(q_out_b.float())
    total = q_out_a.new_zeros((), dtype=torch.float32)
    for k, a, b in zip(spec.categorical, la, lb):
        joint = a.softmax(1).t() @ b.softmax(1) / a.shape[0]
        joint = ((joint + joint.t()) / 2).clamp_min(1e-12)
        pi, pj = joint.sum(1, keepdim=True), joint.sum(0, keepdim=True)
        info = (joint * (joint.log() - pi.log() - pj.log())).sum()
        total = total + math.log(k) - info
    return total


def continuous_cross_slopes(generate, spec: LatentSpec, codes: LatentBatch, pairs: int = 128) -> torch.Tensor:
    """How much each continuous role leaks into the other one's attribute, as change per code
    unit: the deskewed log-width along code 0 (the slant code), on the ink and on a sharpened,
    near-binary ink (a digit widened with fainter outer strokes still counts), and the
    principal-axis angle in radians along code 1 (the width code). For ``pairs`` latents, code 0
    (first half) or code 1 (second half) moves by a random 0.25-1 units either way; both images
    of a pair come from one ``generate`` call, so they share G's batch statistics.

    Returns (2, 4): the three slopes averaged over each of two disjoint halves of the moved
    latents. Their product is an unbiased estimate of the squared mean slope, which is what
    TrainConfig.cont_purity charges: the square of a single batch mean would add the batch's
    sampling variance, i.e. also charge G for how differently single digits respond. The fourth
    is the slant code's turn against the slant (TrainConfig.slant_turn_charge): per moved
    latent, how far its axis turns the other way from the turn a positive shear gives an
    upright stroke (radians per unit, 0 when it turns with it), weighted by how elongated the
    digit is, since a round digit's axis is noise."""
    m = min(len(codes), pairs)
    half, dev = m // 2, codes.cont.device
    quarter = half // 2
    if quarter < 1:
        raise ValueError(f"continuous_cross_slopes needs at least 4 latents, got {m}")
    step = (torch.rand(m, device=dev) * 0.75 + 0.25) * torch.where(torch.rand(m, device=dev) < 0.5, -1.0, 1.0)
    moved = codes.cont[:m].clone()
    moved[:half, 0] += step[:half]
    moved[half:, 1] += step[half:]
    both = LatentBatch(codes.z[:m].repeat(2, 1), codes.cat[:m].repeat(2, 1), torch.cat([codes.cont[:m], moved]))
    x = ink(generate(spec.assemble(both)), keep_graph=True)

    def log_width_slope(moments):
        log_width = 0.5 * torch.log(moments["deskewed_cxx"] + 1e-3)
        return (log_width[m:m + half] - log_width[:half]) / step[:half]

    moments = second_moments(x)
    # A pair whose axis turns through horizontal reads as ~pi here (0.44 % of pairs). Taking
    # the axial turn instead (attributes.unwrap_axial_rows' rule) trained a worse seed-0 model
    # (README "Rotation is an axis angle"), so this stays until seeds say otherwise.
    angle_slope = (moments["angle"][m + half:] - moments["angle"][half:m]) / step[half:]
    # The slant code's turn is read as an axial turn (a half turn is no turn): it is charged
    # per digit, where a pair crossing horizontal would read as a turn of ~pi.
    turn = moments["angle"][m:m + half] - moments["angle"][:half]
    turn_per_unit = (torch.remainder(turn + math.pi / 2, math.pi) - math.pi / 2) / step[:half]
    spread = moments["cxx"][:half] + moments["cyy"][:half]
    elongation = (torch.hypot(moments["cyy"][:half] - moments["cxx"][:half], 2 * moments["cxy"][:half])
                  / spread.clamp_min(1e-6)).detach()
    # A positive shear (x += s * y, rows growing downwards) turns an upright stroke to negative
    # angles, and real_cont_roles makes code 0 such a shear of tall digits: a turn > 0 is against.
    turn_against = elongation * F.relu(turn_per_unit)
    per_latent = torch.stack([log_width_slope(moments),
                              log_width_slope(second_moments(torch.sigmoid((x - 0.5) * 12))), angle_slope,
                              turn_against])
    return torch.stack([per_latent[:, :quarter].mean(1), per_latent[:, quarter:2 * quarter].mean(1)])


def random_affine(images: torch.Tensor, degrees: float, scale: float, shift: float) -> torch.Tensor:
    """Differentiable random rotation/scale/shift per image (bilinear, zero = background -1)."""
    n = images.shape[0]
    dev = images.device
    angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(degrees)
    s = 1 + (torch.rand(n, device=dev) * 2 - 1) * scale
    tx, ty = ((torch.rand(2, n, device=dev) * 2 - 1) * shift * 2)  # fraction of the half-width grid
    return _affine_warp(images, _similarity_theta(angle, s, tx, ty))


def _similarity_theta(angle: torch.Tensor, scale, tx, ty) -> torch.Tensor:
    """(n, 2, 3) output -> input matrices of a rotation by ``angle`` radians (the way a positive
    ``slant_stretch`` shear tilts an upright stroke), a scaling by ``scale`` and a shift."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)


def _affine_warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp each image by its 2x3 matrix ``theta`` (output -> input coordinates, as
    ``affine_grid`` takes them); bilinear, with the -1 background filling what comes in."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def _then(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The one output -> input matrix of warping by ``first`` and then by ``second``: an output
    point maps through ``second`` into ``first``'s output, then through ``first``."""
    return first[:, :, :2] @ second + F.pad(first[:, :, 2:], (2, 0))


def slant_stretch(images: torch.Tensor, shear: torch.Tensor, log_stretch: torch.Tensor,
                  radians: torch.Tensor | None = None) -> torch.Tensor:
    """Per image: horizontal shear (x += shear * y) and horizontal stretch by exp(log_stretch),
    about the image centre, after a rotation by ``radians`` when given (``rotate``'s sense). One
    bilinear resampling for all of it, so a combined warp blurs no more than a single one."""
    one, zero = torch.ones_like(shear), torch.zeros_like(shear)
    # The inverse transform: _affine_warp takes output -> input coordinates.
    theta = torch.stack([torch.stack([torch.exp(-log_stretch), -shear, zero], 1),
                         torch.stack([zero, one, zero], 1)], 1)
    if radians is not None:
        theta = _then(_similarity_theta(radians, 1.0, zero, zero), theta)
    return _affine_warp(images, theta)


def rotate(images: torch.Tensor, radians: torch.Tensor) -> torch.Tensor:
    """Per image: rotation about the image centre by ``radians``, the way a positive
    ``slant_stretch`` shear tilts an upright stroke (bilinear, background -1)."""
    zero = torch.zeros_like(radians)
    return _affine_warp(images, _similarity_theta(radians, 1.0, zero, zero))


def random_stroke(images: torch.Tensor) -> torch.Tensor:
    """Per image: 3x3 dilation (thicker strokes), erosion (thinner) or nothing, a third each."""
    thick = F.max_pool2d(images, 3, 1, 1)
    thin = -F.max_pool2d(-images, 3, 1, 1)
    choice = torch.randint(3, (images.shape[0], 1, 1, 1), device=images.device)
    return torch.where(choice == 0, thick, torch.where(choice == 1, thin, images))

