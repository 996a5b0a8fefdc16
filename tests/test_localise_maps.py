"Issue #14: localisation works on attention maps of any size (7x7 from `efficientnet_lite0_s16`), not only the 4x4 default."
import numpy as np
import pytest
from memrec.localise import CropGeometry, box_iou, candidate_boxes, localise, saliency


def _one_cell(n: int, r: int, c: int, T: int = 1) -> np.ndarray:
    a = np.full((T, n, n), .01 / (n * n - 1)); a[:, r, c] = .99
    return a


@pytest.mark.parametrize('n', [4, 7, 14])
def test_saliency_peak_in_attended_cell(n):
    cell = 112 / n
    for r, c in [(0, 0), (n - 1, 0), (n // 2, n - 1), (1, 2)]:
        S = saliency(_one_cell(n, r, c)[0], 112, sigma=0)
        assert S.shape == (112, 112) and S.max() == pytest.approx(1)
        y, x = np.unravel_index(S.argmax(), S.shape)
        assert r * cell <= y < (r + 1) * cell and c * cell <= x < (c + 1) * cell   # rows are y, columns x


def test_non_square_map_and_size():
    a = np.zeros((7, 5)); a[6, 0] = 1                    # bottom-left cell of a 7-row, 5-column map
    S = saliency(a, 70, sigma=0); y, x = np.unravel_index(S.argmax(), S.shape)
    assert y >= 60 and x < 14


@pytest.mark.parametrize('n', [4, 7])
def test_box_covers_attended_cell(n):
    "The thresholded box of one attended cell is centred on that cell (x, y order), and is tighter on a finer map."
    r, c = n - 1, 1
    b, _ = candidate_boxes(saliency(_one_cell(n, r, c), 112, 8.0), 100 / 255)
    x0, y0, x1, y1 = b[0, 0]; cell = 112 / n
    assert abs((x0 + x1) / 2 - (c + .5) * cell) <= cell / 2 and abs((y0 + y1) / 2 - min((r + .5) * cell, 112)) <= cell / 2 + 4
    assert (x1 - x0) <= 2 * cell + 16


def test_finer_map_localises_better():
    "A 16-px actor tracked by the attention peak: the 7x7 map's boxes overlap it more than the 4x4 map's."
    T, iou = 12, {}
    xs = np.linspace(10, 90, T)                             # actor's left edge, crop px
    gt = np.stack([xs, np.full(T, 60.), xs + 20, np.full(T, 90.)], -1)[None]
    for n in (4, 7):
        cell = 112 / n; a = np.full((1, T, n, n), .01 / (n * n - 1))
        for t in range(T): a[0, t, int(75 // cell), int(min((xs[t] + 10) // cell, n - 1))] = .99
        linked, smooth = localise(a, np.arange(T)[None], 112, 8.0, 100 / 255, 7)
        assert linked.shape == (1, T, 4) and not np.isnan(linked).any()
        iou[n] = box_iou(smooth, gt).mean()
    assert iou[7] > iou[4] and iou[7] > .3, iou


def test_geometry_round_trip():
    g = CropGeometry(160, 120, 112, 112); b = np.array([[10., 20., 50., 90.]])
    np.testing.assert_allclose(g.to_crop(g.to_original(b)), b)
