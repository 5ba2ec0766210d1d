import copy
import math

import numpy as np
import pytest
import torch

from infogan import losses
from infogan.attributes import (axis_nearer_horizontal, measure, unwrap_axial_rows, within_row_correlation,
                                within_row_correlation_interval)
from infogan.latent import LatentBatch, LatentSpec
from infogan.metrics import hungarian_accuracy, normalized_mutual_info


def test_spec_layout_and_entropy():
    spec = LatentSpec(noise_dim=62, categorical=(10, 3), continuous=2)
    assert spec.input_dim == 62 + 13 + 2
    assert spec.q_output_dim == 13 + 4
    assert spec.entropy_categorical == pytest.approx(math.log(10) + math.log(3))
    assert spec.entropy_continuous == pytest.approx(2 * math.log(2))
    names = [c["name"] for c in spec.describe()]
    assert names == ["cat0", "cat1", "cont0", "cont1"]


def test_sampling_shapes_ranges_and_seed():
    spec = LatentSpec(noise_dim=5, categorical=(10, 4), continuous=3)
    a = spec.sample(4000, torch.Generator().manual_seed(1))
    b = spec.sample(4000, torch.Generator().manual_seed(1))
    assert a.z.shape == (4000, 5) and a.cat.shape == (4000, 2) and a.cont.shape == (4000, 3)
    assert torch.equal(a.z, b.z) and torch.equal(a.cat, b.cat)
    assert a.cat[:, 0].min() == 0 and a.cat[:, 0].max() == 9 and a.cat[:, 1].max() == 3
    assert a.cont.min() >= -1 and a.cont.max() <= 1 and a.cont.abs().max() > 0.99
    counts = torch.bincount(a.cat[:, 0], minlength=10).float()
    assert (counts / 4000 - 0.1).abs().max() < 0.03  # uniform prior


def test_assemble_one_hot_and_split():
    spec = LatentSpec(noise_dim=2, categorical=(3,), continuous=1)
    batch = LatentBatch(torch.zeros(2, 2), torch.tensor([[2], [0]]), torch.tensor([[0.5], [-0.5]]))
    x = spec.assemble(batch)
    assert x.tolist() == [[0, 0, 0, 0, 1, 0.5], [0, 0, 1, 0, 0, -0.5]]
    q = torch.arange(5.0).unsqueeze(0)
    logits, mean, log_std = spec.split_q(q)
    assert logits[0].tolist() == [[0, 1, 2]] and mean.tolist() == [[3]] and log_std.tolist() == [[4]]


def test_spec_rejects_degenerate_codes():
    with pytest.raises(ValueError, match=">= 2 values"):
        LatentSpec(categorical=(1,))


def test_gan_losses_on_known_logits():
    zero = torch.zeros(8)
    assert float(losses.d_loss(zero, zero)) == pytest.approx(2 * math.log(2))
    assert float(losses.g_loss(zero)) == pytest.approx(math.log(2))
    assert float(losses.g_loss(torch.full((4,), 20.0))) < 1e-6


def test_info_terms_known_values():
    spec = LatentSpec(noise_dim=0, categorical=(10,), continuous=2)
    codes = LatentBatch(torch.zeros(6, 0), torch.arange(6).unsqueeze(1), torch.tensor([[0.3, -0.2]] * 6))
    # Uniform logits: CE = ln 10, so L_I = 0. Mean = code, log-std = 0: NLL = 0.5 ln(2 pi) per code.
    q = torch.cat([torch.zeros(6, 10), codes.cont, torch.zeros(6, 2)], 1)
    terms = losses.info_nll(spec, q, codes)
    assert float(terms.cat_nll) == pytest.approx(math.log(10), abs=1e-6)
    assert float(terms.cont_nll) == pytest.approx(2 * 0.5 * math.log(2 * math.pi), abs=1e-6)
    mi_cat, _ = losses.mutual_info_lower_bound(spec, terms)
    assert mi_cat == pytest.approx(0.0, abs=1e-6)
    # A confident, correct Q recovers all of H(c).
    sure = torch.cat([torch.nn.functional.one_hot(codes.cat[:, 0], 10) * 50.0, torch.zeros(6, 4)], 1)
    assert losses.mutual_info_lower_bound(spec, losses.info_nll(spec, sure, codes))[0] == pytest.approx(
        math.log(10), abs=1e-4)
    # log-std = log 2 and an error of 2: 0.5 ln 2pi + ln 2 + 0.5 per code.
    off = torch.cat([torch.zeros(6, 10), codes.cont + 2, torch.full((6, 2), math.log(2))], 1)
    expect = 2 * (0.5 * math.log(2 * math.pi) + math.log(2) + 0.5)
    assert float(losses.info_nll(spec, off, codes).cont_nll) == pytest.approx(expect, abs=1e-5)


def test_hungarian_accuracy_on_permutations():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 1000)
    perm = rng.permutation(10)
    acc, mapping = hungarian_accuracy(perm[labels], labels, 10, 10)
    assert acc == 1.0
    assert all(mapping[perm[k]] == k for k in range(10))
    noisy = perm[labels].copy()
    noisy[:100] = (noisy[:100] + 1) % 10
    assert hungarian_accuracy(noisy, labels, 10, 10)[0] == pytest.approx(0.9, abs=0.01)
    # 4 and 9 merged into one code value: that value matches the larger group, the smaller is lost.
    merged = np.where(labels == 9, 4, labels)
    smaller = min(np.mean(labels == 4), np.mean(labels == 9))
    assert hungarian_accuracy(merged, labels, 10, 10)[0] == pytest.approx(1 - smaller)


def test_nmi_bounds():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 5000)
    assert normalized_mutual_info((labels + 3) % 10, labels) == pytest.approx(1.0)
    assert normalized_mutual_info(rng.integers(0, 10, 5000), labels) < 0.02


def _bar(angle_deg: float, width: int) -> torch.Tensor:
    """A 28x28 bar through the centre, leaning ``angle_deg`` right of vertical, in [-1, 1]."""
    ys, xs = torch.meshgrid(torch.arange(28.0) - 13.5, torch.arange(28.0) - 13.5, indexing="ij")
    t = math.radians(angle_deg)
    # distance from the line through the centre with direction (sin t, -cos t) in (x, y)
    dist = (xs * math.cos(t) + ys * math.sin(t)).abs()
    img = ((dist <= width / 2) & (ys.abs() <= 10)).float()
    return (img * 2 - 1).view(1, 1, 28, 28)


def test_attributes_track_rotation_and_thickness():
    angles = [-30, -15, 0, 15, 30]
    rot = measure(torch.cat([_bar(a, 3) for a in angles]))["rotation"]
    assert np.all(np.diff(rot) > 0) and rot[2] == pytest.approx(0, abs=1)
    thick = measure(torch.cat([_bar(0, w) for w in (2, 4, 6)]))["thickness"]
    assert np.all(np.diff(thick) > 0.5)
    values = np.tile(np.array([1.0, 2.0, 3.0]), 2)
    assert within_row_correlation(values, values * 5 + np.repeat([0.0, 100.0], 3), 2) == pytest.approx(1.0)


def test_an_axis_turning_through_horizontal_reads_as_a_small_steady_turn():
    """A wide bar turning 6 degrees a step through horizontal: one image's angle wraps from
    +90 to -90, the sweep's unwrapped angles do not."""
    angles = [78, 84, 90, 96, 102]
    rot = measure(torch.cat([_bar(a, 3) for a in angles]))["rotation"]
    assert rot.max() > 80 and rot.min() < -70  # wrapped into (-90, 90]
    unwrapped = unwrap_axial_rows(rot, 1)
    assert np.allclose(np.diff(unwrapped), 6, atol=1.5), unwrapped
    values = np.arange(5.0)
    assert within_row_correlation(values, unwrapped, 1) > 0.99 > abs(within_row_correlation(values, rot, 1)) + 0.1
    assert unwrap_axial_rows(np.tile(rot, 2), 2).shape == (10,)


def test_axis_nearer_horizontal_splits_bars_at_45_degrees_either_way():
    """The axis role's split (shear below 45 degrees from vertical, rotate beyond it), with
    the batch's images in any order and the answer on their device."""
    angles = [0, -30, 40, 50, -60, 90, 120, 140]
    wide = axis_nearer_horizontal(torch.cat([_bar(a, 3) for a in angles]))
    assert wide.dtype == torch.bool and wide.tolist() == [False, False, False, True, True, True, True, False]


def test_within_row_correlation_and_its_bootstrap_interval():
    """Rows with their own offsets: the offsets do not count; a weak true effect under noise
    gets an interval around its estimate that narrows with more rows; an unrelated attribute's
    interval straddles 0."""
    rng = np.random.default_rng(0)
    steps = np.linspace(-1, 1, 9)

    def sweep(rows, slope):
        values = np.tile(steps, rows)
        attribute = np.repeat(rng.normal(0, 10, rows), 9) + slope * values + rng.normal(0, 1, rows * 9)
        return values, attribute

    values, attribute = sweep(200, 0.0)
    assert abs(within_row_correlation(values, np.repeat(np.arange(200.0), 9) + 2 * values, 200) - 1) < 1e-9
    r = within_row_correlation(values, attribute, 200)
    lo, hi = within_row_correlation_interval(values, attribute, 200)
    assert lo < 0 < hi and lo <= r <= hi
    widths = []
    for rows in (200, 2000):
        values, attribute = sweep(rows, 0.5)
        r = within_row_correlation(values, attribute, rows)
        lo, hi = within_row_correlation_interval(values, attribute, rows)
        true_r = 0.5 * steps.std() / math.sqrt((0.5 * steps.std()) ** 2 + 8 / 9)  # noise left after centring
        assert lo <= r <= hi and lo < true_r < hi
        widths.append(hi - lo)
    assert widths[1] < 0.5 * widths[0]  # ~ 1/sqrt(rows)
    assert within_row_correlation_interval(values, attribute, 2000) == within_row_correlation_interval(values, attribute, 2000)


def test_code_roles_bar_at_the_estimate_and_across_the_interval():
    from infogan.evaluate import code_roles

    table = {"cont0": {"rotation": -0.9, "thickness": 0.1, "width": 0.25},
             "cont1": {"rotation": 0.01, "thickness": 0.3, "width": 0.85}}
    tight = {c: {a: {"lo": r - 0.02, "hi": r + 0.02} for a, r in attrs.items()} for c, attrs in table.items()}
    roles = code_roles(table, tight)
    assert (roles["rotation_code"], roles["shape_code"], roles["shape_attribute"]) == ("cont0", "cont1", "width")
    assert roles["meets_bar"] and roles["meets_bar_across_interval"]
    assert roles["interval95"]["rotation_r"] == pytest.approx({"lo": 0.88, "hi": 0.92})
    assert roles["interval95"]["shape_cross_r"] == pytest.approx({"lo": 0.0, "hi": 0.03})  # straddles 0
    wide = {c: {a: {"lo": r - 0.1, "hi": r + 0.1} for a, r in attrs.items()} for c, attrs in table.items()}
    roles = code_roles(table, wide)
    assert roles["meets_bar"] and not roles["meets_bar_across_interval"]  # 0.25 + 0.1 > 0.3
    table["cont0"]["width"] = 0.35
    assert not code_roles(table)["meets_bar"] and "interval95" not in code_roles(table)


def test_frechet_distance_and_prdc_known_values():
    from infogan.features import frechet_distance, prdc

    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 4))
    b = rng.normal(size=(2000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, mean shifted by 3 in one dimension: FD = 9 (up to sampling noise).
    assert frechet_distance(a, b + np.array([3.0, 0, 0, 0])) == pytest.approx(9.0, rel=0.05)
    same = prdc(a[:500], b[:500], k=5)
    assert same["precision"] > 0.8 and same["recall"] > 0.8
    far = prdc(a[:500], b[:500] + 10.0, k=5)
    assert far["precision"] == 0.0 and far["recall"] == 0.0 and far["coverage"] == 0.0


def test_random_warp_is_identity_at_zero_and_keeps_background():
    from infogan.losses import random_affine, random_stroke

    x = torch.rand(3, 1, 28, 28) * 2 - 1
    assert torch.allclose(random_affine(x, 0, 0, 0), x, atol=1e-5)
    blank = -torch.ones(2, 1, 28, 28)
    assert torch.allclose(random_affine(blank, 25, 0.1, 0.08), blank, atol=1e-5)
    assert torch.equal(random_stroke(blank), blank)


def test_slant_stretch_moves_only_its_own_attribute():
    """The roles term's warps: a shear slants a vertical bar without widening it, a horizontal
    stretch widens it without slanting it, and zero warp is the identity."""
    bar = -torch.ones(1, 1, 28, 28)
    bar[..., 6:22, 13:16] = 1.0
    bars = bar.repeat(3, 1, 1, 1)
    zero = torch.zeros(3)
    assert torch.allclose(losses.slant_stretch(bars, zero, zero), bars, atol=1e-5)
    base = measure(bar)
    slanted = measure(losses.slant_stretch(bars, torch.tensor([-0.4, 0.0, 0.4]), zero))
    assert slanted["rotation"][0] * slanted["rotation"][2] < 0 and abs(slanted["rotation"][2]) > 15
    assert np.allclose(slanted["width"], base["width"], atol=0.5)
    stretched = measure(losses.slant_stretch(bars, zero, torch.tensor([-0.3, 0.0, 0.3])))
    assert stretched["width"][0] < base["width"][0] < stretched["width"][2]
    assert np.allclose(stretched["rotation"], 0.0, atol=1.0)


def test_rotate_turns_the_axis_by_its_angle_the_way_a_shear_tilts_it():
    """The rotation role's warp: a bar turned by +-15 degrees reads +-15 degrees, leaning the
    way a positive shear leans it; zero is the identity. The deskewed width grows alike either
    way (a thin bar turned shears by less than its own slant), so it does not follow the turn."""
    bar = -torch.ones(1, 1, 28, 28)
    bar[..., 4:24, 12:16] = 1.0
    bars = bar.repeat(3, 1, 1, 1)
    assert torch.allclose(losses.rotate(bars, torch.zeros(3)), bars, atol=1e-5)
    turned = measure(losses.rotate(bars, torch.deg2rad(torch.tensor([-15.0, 0.0, 15.0]))))
    sheared = measure(losses.slant_stretch(bar, torch.tensor([0.3]), torch.zeros(1)))
    assert np.allclose(turned["rotation"] * np.sign(sheared["rotation"][0]), [-15, 0, 15], atol=0.5)
    assert np.isclose(turned["width"][0], turned["width"][2], rtol=0.01), turned["width"]


def test_slant_stretch_with_a_rotation_warps_once_as_rotating_then_shearing_would():
    """The rotation role's views: one resampling that does what rotate() and then
    slant_stretch() do, on a smooth blob where two bilinear resamplings lose next to nothing,
    and exactly rotate() when shear and stretch are zero."""
    ys, xs = torch.meshgrid(torch.arange(28.0) - 13.5, torch.arange(28.0) - 13.5, indexing="ij")
    blob = (2 * torch.exp(-((xs - 2) / 5) ** 2 - ((ys + 1) / 8) ** 2) - 1).expand(3, 1, 28, 28)
    radians = torch.deg2rad(torch.tensor([-25.0, 20.0, 25.0]))
    shear, stretch = torch.tensor([0.4, -0.3, 0.0]), torch.tensor([0.0, 0.2, -0.25])
    once = losses.slant_stretch(blob, shear, stretch, radians=radians)
    twice = losses.slant_stretch(losses.rotate(blob, radians), shear, stretch)
    other_order = losses.rotate(losses.slant_stretch(blob, shear, stretch), radians)

    def per_image(a, b):
        return (a - b).abs().amax((1, 2, 3))

    assert (per_image(once, twice) < 0.05).all(), per_image(once, twice)
    assert (per_image(once, other_order) > 0.2).all() and (per_image(once, blob) > 0.3).all()
    zero = torch.zeros(3)
    assert torch.allclose(losses.slant_stretch(blob, zero, zero, radians=radians), losses.rotate(blob, radians), atol=1e-6)


def test_width_ignores_slant_and_follows_horizontal_stretch():
    """An upright ring ("0") slanted by a shear keeps its width (the extent across the
    principal axis would shrink), and a horizontal stretch by a scales it by about a."""
    ys, xs = torch.meshgrid(torch.arange(28.0) - 13.5, torch.arange(28.0) - 13.5, indexing="ij")
    r = torch.sqrt((xs / 5) ** 2 + (ys / 9) ** 2)
    ring = torch.where((r > 0.75) & (r < 1.0), 1.0, -1.0).view(1, 1, 28, 28).repeat(3, 1, 1, 1)
    zero = torch.zeros(3)
    slanted = measure(losses.slant_stretch(ring, torch.tensor([0.0, 0.3, 0.6]), zero))
    assert slanted["rotation"][2] < -15  # visibly slanted
    assert np.allclose(slanted["width"], slanted["width"][0], rtol=0.03), slanted["width"]
    stretched = measure(losses.slant_stretch(ring, zero, torch.tensor([-0.2, 0.0, 0.2])))
    assert np.allclose(stretched["width"] / stretched["width"][1], np.exp([-0.2, 0.0, 0.2]), rtol=0.05)


def _blob_generator(spec: LatentSpec, width_per_slant_unit: torch.Tensor, turn_per_width_unit: float,
                    slant_turn: torch.Tensor | float = 0.3, base_angle: float = 0.0):
    """A stand-in G: an elliptic blob whose log-width follows code 1 (plus ``width_per_slant_unit``
    times code 0) and whose axis turns with code 0 (``slant_turn`` rad per unit, the way a
    positive shear turns an upright stroke; plus ``turn_per_width_unit`` rad times code 1),
    from ``base_angle`` (pi/2: lying down)."""
    ys, xs = torch.meshgrid(torch.arange(28.0) - 13.5, torch.arange(28.0) - 13.5, indexing="ij")

    def generate(latents: torch.Tensor) -> torch.Tensor:
        slant, width = latents[:, -2], latents[:, -1]
        angle = (base_angle + slant_turn * slant + turn_per_width_unit * width).view(-1, 1, 1)
        sx = (2.5 * torch.exp(0.2 * width + width_per_slant_unit * slant)).view(-1, 1, 1)
        u = xs * torch.cos(angle) - ys * torch.sin(angle)
        v = xs * torch.sin(angle) + ys * torch.cos(angle)
        return (2 * torch.exp(-0.5 * ((u / sx) ** 2 + (v / 6.0) ** 2)) - 1).unsqueeze(1)
    return generate


def test_continuous_cross_slopes_measure_each_roles_leak():
    """Zero for a G whose slant code only turns and whose width code only widens; the planted
    leaks (log-width per slant unit, radians per width unit) read back, with a gradient."""
    spec = LatentSpec(noise_dim=4, categorical=[10], continuous=2)
    torch.manual_seed(0)
    codes = spec.sample(128)
    clean = losses.continuous_cross_slopes(_blob_generator(spec, torch.tensor(0.0), 0.0), spec, codes, pairs=128)
    assert clean.shape == (2, 4) and clean.abs().max() < 0.02, clean
    leak = torch.tensor(0.15, requires_grad=True)
    halves = losses.continuous_cross_slopes(_blob_generator(spec, leak, -0.2), spec, codes, pairs=128)
    for slopes in halves:  # each half of the moved latents reads the planted leaks on its own
        assert slopes[0].item() == pytest.approx(0.15, abs=0.03) and slopes[1].item() > 0.03
        assert slopes[2].item() == pytest.approx(0.2, abs=0.04)  # the angle grows leaning right: -rotation
    (halves[0] * halves[1]).sum().backward()
    assert leak.grad > 0
    with pytest.raises(ValueError, match="at least 4 latents"):
        losses.continuous_cross_slopes(_blob_generator(spec, leak, 0.0), spec, codes, pairs=3)


@pytest.mark.parametrize("base_angle", [0.0, math.pi / 2])
def test_slant_turn_against_reads_only_turns_against_the_slant_even_through_horizontal(base_angle):
    """An upright and a lying blob (whose axis crosses horizontal as code 0 moves): turning
    with the slant costs nothing; turning against reads about elongation x rad per unit, with a
    gradient that turns it back."""
    spec = LatentSpec(noise_dim=4, categorical=[10], continuous=2)
    torch.manual_seed(0)
    codes = spec.sample(128)
    codes.cont[:, 0] = 0.2 * codes.cont[:, 0]  # start near the axis' own angle
    with_slant = losses.continuous_cross_slopes(_blob_generator(spec, torch.tensor(0.0), 0.0, 0.3, base_angle),
                                                spec, codes, pairs=128)
    assert with_slant[:, 3].abs().max() < 1e-3, with_slant
    against = torch.tensor(-0.3, requires_grad=True)
    halves = losses.continuous_cross_slopes(_blob_generator(spec, torch.tensor(0.0), 0.0, against, base_angle),
                                            spec, codes, pairs=128)
    elongation = (36 - 6.25) / (36 + 6.25)  # the blob's axes: 6 and 2.5 pixels
    assert halves[:, 3].tolist() == pytest.approx([0.3 * elongation] * 2, rel=0.15), halves
    halves[:, 3].mean().backward()
    assert against.grad < 0


def test_paired_code_information_gap_known_values():
    from infogan.losses import paired_code_information_gap

    spec = LatentSpec(noise_dim=2, categorical=(4,), continuous=0)
    confident = torch.full((8, 4), -30.0)
    confident[torch.arange(8), torch.arange(8) % 4] = 30.0  # balanced, confident
    assert abs(paired_code_information_gap(spec, confident, confident).item()) < 1e-4
    # Confident, but the warped copy reads the next value: the symmetrised joint keeps ln 2 of ln 4.
    shifted = confident.roll(1, dims=0)
    assert abs(paired_code_information_gap(spec, confident, shifted).item() - math.log(2)) < 1e-4
    # Uninformative predictions: the gap is the whole of H(c) = ln 4.
    flat = torch.zeros(8, 4)
    assert abs(paired_code_information_gap(spec, flat, flat).item() - math.log(4)) < 1e-4


def test_bn_calibrated_reads_a_batch_as_training_mode_would_and_leaves_d_alone():
    """The evaluate stage's Q readings use D's BatchNorm statistics of the images' own kind:
    calibrated on one batch, eval mode reads that batch as training mode (batch statistics)
    does, while D's own running statistics read it differently and stay untouched."""
    from infogan.metrics import bn_calibrated
    from infogan.nets import Discriminator

    torch.manual_seed(0)
    latent = {"noise_dim": 8, "categorical": [10], "continuous": 2}
    d = Discriminator("mnist", latent)
    with torch.no_grad():
        d.train()
        for _ in range(3):  # running statistics of another kind of image
            d(torch.rand(64, 1, 28, 28) * 2 - 1)
        d.eval()
        before = {k: v.clone() for k, v in d.state_dict().items()}
        batch = torch.rand(256, 1, 28, 28) * 0.5 - 1  # darker, narrower range
        as_trained = copy.deepcopy(d).train()(batch)[1]
        calibrated = bn_calibrated(d, [batch])
        assert not calibrated.training
        assert torch.allclose(calibrated(batch)[1], as_trained, atol=1e-2)  # running var is unbiased
        assert (d(batch)[1] - as_trained).abs().max() > 0.1
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())
