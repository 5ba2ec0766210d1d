"""Handwritten-digit geometry for MNIST-like data (28x28, white ink on black).

- ``geometry``: image moments of a digit: its skew (the x-on-y slope that MNIST deskewing
  removes), principal-axis angle, deskewed width and stroke thickness.
- ``terms``: two objective terms. ``digit_roles`` teaches continuous codes 0 and 1 to mean
  slant and width on real digits (D's step); ``role_purity`` charges G for each role leaking
  into the other's attribute (G's step).
- ``evaluation``: the ``digits`` attribute set and the bar the slant and width codes are
  judged on.
"""
from . import evaluation, terms  # noqa: F401 - registering is the point of the import
