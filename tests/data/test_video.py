"""Depth colour map: nearest depth gets the last anchor colour, `far` the first, sky black."""

import torch

from mirage.data.video import colorize_depth


def test_colorize_depth_maps_near_far_and_sky_to_the_anchor_colours():
    depth = torch.tensor([[[1.0, 4.0, float("inf"), 0.0]]])  # [T=1,H=1,W=4]
    rgb = colorize_depth(depth, far=4.0)
    assert rgb.shape == (1, 3, 1, 4)
    yellow, purple = torch.tensor([0.99, 0.91, 0.14]), torch.tensor([0.27, 0.00, 0.33])
    torch.testing.assert_close(rgb[0, :, 0, 0], yellow)  # nearest: inverse depth 1 -> top
    torch.testing.assert_close(rgb[0, :, 0, 1], purple)  # at `far`: inverse depth 1/4 -> bottom
    assert (rgb[0, :, 0, 2:] == 0).all()  # inf (sky) and 0 (no depth) are black
    # halfway in inverse depth (1/1.6 = 0.625 = (1 + 0.25) / 2) is the middle anchor colour
    mid = colorize_depth(torch.tensor([[[1.0, 1.6, 4.0]]]), far=4.0)[0, :, 0, 1]
    torch.testing.assert_close(mid, torch.tensor([0.13, 0.57, 0.55]))
