"""Cameras: validation, scaling under the continuous pixel convention, slicing, inverses."""

import pytest
import torch
from camera_factory import intrinsics, pose, random_cameras, rotation

from mirage.geometry import Cameras, unproject


def test_w2c_inverts_c2w_and_centers_are_translations(gen):
    cams = random_cameras(gen, 4, 30, 52)
    eye = torch.eye(4).expand(4, 4, 4)
    torch.testing.assert_close(cams.w2c @ cams.c2w, eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(cams.centers, cams.c2w[:, :3, 3])


def test_scaled_is_diag_times_K_and_whole_size(gen):
    cams = random_cameras(gen, 2, 704, 1280)
    lat = cams.scaled(1 / 16)
    assert (lat.height, lat.width) == (44, 80)
    expected = torch.diag(torch.tensor([1 / 16, 1 / 16, 1.0])) @ cams.K
    torch.testing.assert_close(lat.K, expected)
    with pytest.raises(ValueError, match="whole size"):
        cams.scaled(1 / 3)


def test_latent_cell_centre_looks_along_ray_of_pixel_point():
    # Cell (i, j) of a grid s times coarser sees the ray through pixel point ((j+.5)s, (i+.5)s).
    s, H, W = 8, 48, 64
    cams = Cameras(intrinsics(H, W), torch.eye(4), H, W)
    lat = cams.scaled(1 / s)
    i, j = 2, 5
    in_latent = unproject(torch.tensor([[[j + 0.5, i + 0.5]]]), torch.ones(1, 1), lat.K, lat.c2w)
    pix = torch.tensor([[[(j + 0.5) * s, (i + 0.5) * s]]])
    in_image = unproject(pix, torch.ones(1, 1), cams.K, cams.c2w)
    torch.testing.assert_close(in_latent, in_image)


def test_slicing_len_cat(gen):
    cams = random_cameras(gen, 5, 30, 52)
    assert len(cams) == 5 and len(cams[1:4]) == 3 and len(cams[2]) == 1 and len(cams[-1]) == 1
    torch.testing.assert_close(cams[-1].c2w[0], cams.c2w[4])
    both = Cameras.cat([cams[:2], cams[2:]])
    torch.testing.assert_close(both.c2w, cams.c2w)
    with pytest.raises(ValueError, match="one image size"):
        Cameras.cat([cams, cams.scaled(0.5)])


def test_from_w2c_round_trip(gen):
    cams = random_cameras(gen, 3, 30, 52)
    again = Cameras.from_w2c(cams.K, cams.w2c, 30, 52)
    torch.testing.assert_close(again.c2w, cams.c2w, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "K, c2w, match",
    [
        (intrinsics(8, 8), pose(rotation(0.3) * 1.1, [0, 0, 0]), "rigid"),
        (intrinsics(8, 8), pose(torch.diag(torch.tensor([1.0, 1.0, -1.0])), [0, 0, 0]), "det"),
        (intrinsics(8, 8), pose(rotation(0.1), [float("nan"), 0, 0]), "finite"),
        (torch.diag(torch.tensor([-5.0, 5.0, 1.0])), torch.eye(4), "positive focal"),
        (torch.eye(3)[:2], torch.eye(4), r"\[T,3,3\]"),
        (intrinsics(8, 8).expand(2, 3, 3), torch.eye(4).expand(3, 4, 4), "same T"),
    ],
)
def test_bad_cameras_are_refused(K, c2w, match):
    with pytest.raises(ValueError, match=match):
        Cameras(K, c2w, 8, 8)


def test_bad_size_refused():
    with pytest.raises(ValueError, match="positive integers"):
        Cameras(intrinsics(8, 8), torch.eye(4), 0, 8)
