"""The digits preset on constructed images: its geometry, its warps, its terms and its bar."""
import math

import numpy as np
import pytest
import torch

from infogan.attributes import within_row_correlation
from infogan.latent import LatentSpec
from infogan.presets.digits.evaluation import slant_width_roles
from infogan.presets.digits.geometry import measure, slant_stretch, unwrap_axial_rows
from infogan.presets.digits.terms import cross_slopes


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


def test_slant_stretch_moves_only_its_own_attribute():
    """The roles term's warps: a shear slants a vertical bar without widening it, a horizontal
    stretch widens it without slanting it, and zero warp is the identity."""
    bar = -torch.ones(1, 1, 28, 28)
    bar[..., 6:22, 13:16] = 1.0
    bars = bar.repeat(3, 1, 1, 1)
    zero = torch.zeros(3)
    assert torch.allclose(slant_stretch(bars, zero, zero), bars, atol=1e-5)
    base = measure(bar)
    slanted = measure(slant_stretch(bars, torch.tensor([-0.4, 0.0, 0.4]), zero))
    assert slanted["rotation"][0] * slanted["rotation"][2] < 0 and abs(slanted["rotation"][2]) > 15
    assert np.allclose(slanted["width"], base["width"], atol=0.5)
    stretched = measure(slant_stretch(bars, zero, torch.tensor([-0.3, 0.0, 0.3])))
    assert stretched["width"][0] < base["width"][0] < stretched["width"][2]
    assert np.allclose(stretched["rotation"], 0.0, atol=1.0)


def test_width_ignores_slant_and_follows_horizontal_stretch():
    """An upright ring ("0") slanted by a shear keeps its width (the extent across the
    principal axis would shrink), and a horizontal stretch by a scales it by about a."""
    ys, xs = torch.meshgrid(torch.arange(28.0) - 13.5, torch.arange(28.0) - 13.5, indexing="ij")
    r = torch.sqrt((xs / 5) ** 2 + (ys / 9) ** 2)
    ring = torch.where((r > 0.75) & (r < 1.0), 1.0, -1.0).view(1, 1, 28, 28).repeat(3, 1, 1, 1)
    zero = torch.zeros(3)
    slanted = measure(slant_stretch(ring, torch.tensor([0.0, 0.3, 0.6]), zero))
    assert slanted["rotation"][2] < -15  # visibly slanted
    assert np.allclose(slanted["width"], slanted["width"][0], rtol=0.03), slanted["width"]
    stretched = measure(slant_stretch(ring, zero, torch.tensor([-0.2, 0.0, 0.2])))
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
    clean = cross_slopes(_blob_generator(spec, torch.tensor(0.0), 0.0), spec, codes, pairs=128)
    assert clean.shape == (2, 3) and clean.abs().max() < 0.02, clean
    leak = torch.tensor(0.15, requires_grad=True)
    halves = cross_slopes(_blob_generator(spec, leak, -0.2), spec, codes, pairs=128)
    for slopes in halves:  # each half of the moved latents reads the planted leaks on its own
        assert slopes[0].item() == pytest.approx(0.15, abs=0.03) and slopes[1].item() > 0.03
        assert slopes[2].item() == pytest.approx(0.2, abs=0.04)  # the angle grows leaning right: -rotation
    (halves[0] * halves[1]).sum().backward()
    assert leak.grad > 0
    with pytest.raises(ValueError, match="at least 4 latents"):
        cross_slopes(_blob_generator(spec, leak, 0.0), spec, codes, pairs=3)


def _turn_against(generate, spec, codes):
    """slant_turn's charge (weight 1) on role_purity's pairs of ``generate``."""
    from types import SimpleNamespace

    from infogan.presets.digits.terms import SlantTurn, SlantTurnConfig

    keep: dict = {}
    cross_slopes(generate, spec, codes, pairs=128, keep=keep)
    return SlantTurn(SlantTurnConfig(weight=1.0), spec).loss(SimpleNamespace(cache={"role_purity": keep}))


@pytest.mark.parametrize("base_angle", [0.0, math.pi / 2])
def test_slant_turn_reads_only_turns_against_the_slant_even_through_horizontal(base_angle):
    """An upright and a lying blob (whose axis crosses horizontal as code 0 moves): turning
    with the slant costs nothing; turning against reads about elongation x rad per unit, with a
    gradient that turns it back."""
    spec = LatentSpec(noise_dim=4, categorical=[10], continuous=2)
    torch.manual_seed(0)
    codes = spec.sample(128)
    codes.cont[:, 0] = 0.2 * codes.cont[:, 0]  # start near the axis' own angle
    with_slant = _turn_against(_blob_generator(spec, torch.tensor(0.0), 0.0, 0.3, base_angle), spec, codes)
    assert abs(with_slant.item()) < 1e-3
    against = torch.tensor(-0.3, requires_grad=True)
    charge = _turn_against(_blob_generator(spec, torch.tensor(0.0), 0.0, against, base_angle), spec, codes)
    elongation = (36 - 6.25) / (36 + 6.25)  # the blob's axes: 6 and 2.5 pixels
    assert charge.item() == pytest.approx(0.3 * elongation, rel=0.15)
    charge.backward()
    assert against.grad < 0


def test_skew_is_the_shear_a_digit_carries():
    """A shear x += s * y (rows growing downwards) changes the skew of any digit, upright or wide,
    by -s."""
    bar = -torch.ones(1, 1, 28, 28)
    bar[..., 6:22, 13:16] = 1.0
    wide = -torch.ones(1, 1, 28, 28)
    wide[..., 12:16, 6:22] = 1.0
    wide[..., 6:22, 6:9] = 1.0
    shears = torch.tensor([-0.3, 0.0, 0.3])
    for digit in (bar, wide):
        m = measure(slant_stretch(digit.repeat(3, 1, 1, 1), shears, torch.zeros(3)))
        assert np.allclose(m["skew"][1] - m["skew"], shears.numpy(), atol=0.03), m["skew"]


def test_slant_and_width_bar_at_the_estimate_and_across_the_interval():
    table = {"cont0": {"skew": -0.95, "rotation": -0.8, "width": 0.25, "thickness": 0.1},
             "cont1": {"skew": 0.01, "rotation": 0.2, "width": 0.85, "thickness": 0.3}}
    tight = {c: {a: {"lo": r - 0.02, "hi": r + 0.02} for a, r in attrs.items()} for c, attrs in table.items()}
    roles = slant_width_roles(table, tight)
    assert roles["roles"] == {"cont0": "slant", "cont1": "width"}
    assert roles["slant_r"] == 0.95 and roles["slant_rotation_r"] == 0.8
    assert roles["meets_bar"] and roles["meets_bar_across_interval"]
    assert roles["interval95"]["slant_r"] == pytest.approx({"lo": 0.93, "hi": 0.97})
    assert roles["interval95"]["width_cross_r"] == pytest.approx({"lo": 0.0, "hi": 0.03})  # straddles 0
    wide = {c: {a: {"lo": r - 0.1, "hi": r + 0.1} for a, r in attrs.items()} for c, attrs in table.items()}
    roles = slant_width_roles(table, wide)
    assert roles["meets_bar"] and not roles["meets_bar_across_interval"]  # 0.25 + 0.1 > 0.3
    swapped = {"cont0": table["cont1"], "cont1": table["cont0"]}
    assert slant_width_roles(swapped, tight)["roles"] == {"cont1": "slant", "cont0": "width"}
    table["cont0"]["skew"] = -0.85  # under the slant bar of 0.9
    assert not slant_width_roles(table, tight)["meets_bar"]
