"""The ``digits`` attribute set and the bar its slant and width codes are judged on.

The bar: the slant code follows the skew with |r| >= 0.9 and the width at most 0.3; the
width code follows the width with |r| >= 0.8 and the skew at most 0.3 (within-row r over
evaluation's sweeps). Which code is which is the best one-to-one match on those |r|; the
axis angle's r is reported beside the skew's, for comparison with earlier records.
"""
from __future__ import annotations

from ...attributes import AttributeSet, register_attribute_set
from .geometry import measure

SLANT_R_MIN = 0.9
WIDTH_R_MIN = 0.8
CROSS_R_MAX = 0.3


def _abs_interval(interval: dict[str, float]) -> dict[str, float]:
    lo, hi = interval["lo"], interval["hi"]
    if lo <= 0 <= hi:
        return {"lo": 0.0, "hi": max(-lo, hi)}
    return dict(zip(("lo", "hi"), sorted([abs(lo), abs(hi)])))


def _meets_bar(slant_r: float, width_r: float, cross: tuple[float, float]) -> bool:
    return bool(slant_r >= SLANT_R_MIN and width_r >= WIDTH_R_MIN and max(cross) <= CROSS_R_MAX)


def slant_width_roles(table: dict, intervals: dict) -> dict:
    """Which code is the slant code and which the width code, and whether they meet the bar at
    the estimate and across the whole 95 % interval."""
    codes = list(table)
    if len(codes) < 2:
        return {"roles": {}}
    slant, width = max(((a, b) for a in codes for b in codes if a != b),
                       key=lambda p: abs(table[p[0]]["skew"]) + abs(table[p[1]]["width"]))
    cells = {"slant_r": (slant, "skew"), "slant_cross_r": (slant, "width"), "width_r": (width, "width"),
             "width_cross_r": (width, "skew"), "slant_rotation_r": (slant, "rotation"),
             "width_rotation_r": (width, "rotation")}
    out: dict = {"roles": {slant: "slant", width: "width"}, "slant_code": slant, "width_code": width}
    out.update({key: abs(table[code][attr]) for key, (code, attr) in cells.items()})
    out["meets_bar"] = _meets_bar(out["slant_r"], out["width_r"], (out["slant_cross_r"], out["width_cross_r"]))
    ci = {key: _abs_interval(intervals[code][attr]) for key, (code, attr) in cells.items()}
    out["codes"] = {slant: {"attribute": "skew", "r": table[slant]["skew"], "interval95": intervals[slant]["skew"]},
                    width: {"attribute": "width", "r": table[width]["width"], "interval95": intervals[width]["width"]}}
    out["interval95"] = ci
    out["meets_bar_across_interval"] = _meets_bar(ci["slant_r"]["lo"], ci["width_r"]["lo"],
                                                  (ci["slant_cross_r"]["hi"], ci["width_cross_r"]["hi"]))
    out["bar"] = {"slant_r_min": SLANT_R_MIN, "width_r_min": WIDTH_R_MIN, "cross_r_max": CROSS_R_MAX}
    return out


register_attribute_set(AttributeSet("digits", measure, slant_width_roles))
