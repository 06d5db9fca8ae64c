"""Infrared-visible image-fusion metrics, as the VIFB benchmark defines and computes them.

Why these definitions: a fused image is only comparable with the 25 published methods of
VIFB (Zhang et al., CVPRW 2020) when its numbers come from the same formulas, quirks
included. Each metric below follows the benchmark's reference (MATLAB ``metrics/*.m``)
definition, written here as vectorised numpy/scipy code; the reproduction test checks
them against the benchmark's own values (``../shared/data/vifb/metrics.csv``).

Conventions kept on purpose (they are the benchmark's, not ours):
- images are 8-bit; a colour fused image is scored per channel against the same channel
  of each source (a single-channel source is used for every channel) and the channel
  scores are averaged; a single-channel fused image is scored against the sources'
  luma (ITU-R BT.601 weights, as MATLAB's ``rgb2gray``);
- ``Rmse`` and ``Psnr`` use the benchmark's "mse" ``sqrt(sum(d^2)) / (H*W)`` (not the
  textbook mean squared error), ``Variance`` is the standard deviation, ``Mutinf`` is in
  nats, ``Cross_entropy`` / ``Entropy`` in bits, ``Ssim`` is SSIM(vi,F) + SSIM(ir,F);
- ``Spatial_frequency`` reads a colour image as its three channels side by side (what
  the reference's 2-D loop over a 3-D array does), ``Avg_gradient`` divides by
  ``(H-1)(W-1)``;
- ``Qcv`` is the real part of the reference's value (its frequency filtering is done
  on a grid that is not symmetric for even sizes, so the reference carries a tiny
  imaginary part).

Two metrics VIFB does not list but fusion papers report are added:
- ``VIF``: pixel-domain multi-scale visual information fidelity (Sheikh & Bovik 2006) of
  the fused image w.r.t. each source, summed: VIF(vi,F) + VIF(ir,F);
- ``SCD``: sum of the correlations of differences (Aslantas & Bendes 2015):
  corr(F - ir, vi) + corr(F - vi, ir).

Higher is better for every metric except ``Cross_entropy``, ``Rmse`` and ``Qcv``
(see ``LOWER_IS_BETTER``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scipy import fft as sfft
from scipy import ndimage, signal
from skimage.metrics import structural_similarity

VIFB_METRICS: tuple[str, ...] = (
    "Avg_gradient",
    "Cross_entropy",
    "Edge_intensity",
    "Entropy",
    "Mutinf",
    "Psnr",
    "Qabf",
    "Qcb",
    "Qcv",
    "Rmse",
    "Spatial_frequency",
    "Ssim",
    "Variance",
)
EXTRA_METRICS: tuple[str, ...] = ("VIF", "SCD")
METRICS: tuple[str, ...] = VIFB_METRICS + EXTRA_METRICS
LOWER_IS_BETTER: frozenset[str] = frozenset({"Cross_entropy", "Rmse", "Qcv"})
# Metrics that look at the fused image alone (what a stream without a reference can report).
NO_REFERENCE_METRICS: tuple[str, ...] = (
    "Avg_gradient",
    "Edge_intensity",
    "Entropy",
    "Spatial_frequency",
    "Variance",
)

_SOBEL_ROWS = np.array([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]])
_SOBEL_COLS = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
# Cheap enough for every frame of an evaluator (~0.1 s at 640x480 on one core): the
# fused-image-only metrics plus the histogram / error / correlation ones with sources.
FAST_METRICS: tuple[str, ...] = (
    "Avg_gradient",
    "Cross_entropy",
    "Edge_intensity",
    "Entropy",
    "Mutinf",
    "Psnr",
    "Rmse",
    "SCD",
    "Spatial_frequency",
    "Variance",
)

_LUMA = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
Stack = np.ndarray  # float64 (C, H, W)


def load_image(path: str | Path) -> np.ndarray:
    """uint8 image as stored: (H, W) for single-channel files, (H, W, 3) RGB otherwise."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    if image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit image, got {image.dtype}")
    return image


def _luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ _LUMA if image.ndim == 3 else image.astype(np.float64)


def _channels_first(image: np.ndarray) -> Stack:
    """Contiguous float64 (C, H, W): reductions and FFTs over strided views are slow."""
    if image.ndim == 2:
        return image.astype(np.float64)[None]
    return np.ascontiguousarray(np.moveaxis(image, 2, 0), dtype=np.float64)


def _stacks(
    visible: np.ndarray, infrared: np.ndarray, fused: np.ndarray
) -> tuple[Stack, Stack, Stack]:
    """Channel stacks (C, H, W) under the benchmark's per-channel convention."""
    for name, image in (("visible", visible), ("infrared", infrared), ("fused", fused)):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"{name} must be (H, W) or (H, W, 3), got {image.shape}")
    if not visible.shape[:2] == infrared.shape[:2] == fused.shape[:2]:
        raise ValueError(
            f"sizes differ: visible {visible.shape}, infrared {infrared.shape}, fused {fused.shape}"
        )
    if fused.ndim == 2:
        if visible.ndim == 3:
            visible = np.rint(_luma(visible))  # rgb2gray on uint8 rounds
        if infrared.ndim == 3:
            infrared = np.rint(_luma(infrared))
        return (
            visible.astype(np.float64)[None],
            infrared.astype(np.float64)[None],
            fused.astype(np.float64)[None],
        )
    f = _channels_first(fused)

    def per_channel(image: np.ndarray) -> Stack:
        if image.ndim == 2:
            return np.broadcast_to(image.astype(np.float64), f.shape)
        return _channels_first(image)

    return per_channel(visible), per_channel(infrared), f


def _histograms(stack: Stack, bins: int = 256) -> np.ndarray:
    """(C, bins) normalised grey-level histograms of integer-valued channels."""
    c = stack.shape[0]
    index = stack.astype(np.int64).reshape(c, -1) + bins * np.arange(c)[:, None]
    counts = np.bincount(index.ravel(), minlength=c * bins).reshape(c, bins)
    return counts / stack[0].size


def _xlogy(p: np.ndarray, q: np.ndarray, log: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.zeros_like(p)
    ok = (p > 0) & (q > 0)
    out[ok] = p[ok] * log(p[ok] / q[ok])
    return out


# --- information-theory metrics -------------------------------------------------------


def entropy(f: Stack) -> float:
    """Shannon entropy (bits) of the fused grey levels."""
    p = _histograms(np.floor(f))
    return float(np.mean(-_xlogy(p, np.ones_like(p), np.log2).sum(axis=1)))


def cross_entropy(vi: Stack, ir: Stack, f: Stack) -> float:
    """Mean of the KL divergences (bits) of the source histograms from the fused one."""
    pf = _histograms(f)
    ce = [_xlogy(_histograms(src), pf, np.log2).sum(axis=1) for src in (vi, ir)]
    return float(np.mean((ce[0] + ce[1]) / 2.0))


def _minmax_levels(stack: Stack) -> np.ndarray:
    """Per-channel min-max stretch to 0..255 rounded half away from zero (``int16``)."""
    lo = stack.min(axis=(1, 2), keepdims=True)
    hi = stack.max(axis=(1, 2), keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    stretched = np.where(hi > lo, (stack - lo) / span, 0.0) * 255
    return np.floor(stretched + 0.5).astype(np.int64)


def _mutual_information(a: Stack, b: Stack) -> np.ndarray:
    """(C,) mutual information in nats of 256-level min-max-stretched channels."""
    la, lb = _minmax_levels(a), _minmax_levels(b)
    c, n = a.shape[0], a[0].size
    joint_index = (la * 256 + lb).reshape(c, -1) + 65536 * np.arange(c)[:, None]
    joint = np.bincount(joint_index.ravel(), minlength=c * 65536).reshape(c, 65536) / n
    pa = joint.reshape(c, 256, 256).sum(axis=2)
    pb = joint.reshape(c, 256, 256).sum(axis=1)

    def h(p: np.ndarray) -> np.ndarray:
        return -_xlogy(p, np.ones_like(p), np.log).sum(axis=1)

    return h(pa) + h(pb) - h(joint)


def mutinf(vi: Stack, ir: Stack, f: Stack) -> float:
    """MI(vi, F) + MI(ir, F) (Qu et al. 2002), nats."""
    return float(np.mean(_mutual_information(vi, f) + _mutual_information(ir, f)))


# --- error metrics --------------------------------------------------------------------


def _vifb_mse(a: Stack, f: Stack) -> np.ndarray:
    """The benchmark's "mse": sqrt(sum of squared differences) / (H*W), per channel."""
    return np.sqrt(((a - f) ** 2).sum(axis=(1, 2))) / a[0].size


def rmse(vi: Stack, ir: Stack, f: Stack) -> float:
    return float(np.mean((_vifb_mse(vi, f) + _vifb_mse(ir, f)) / 2.0))


def psnr(vi: Stack, ir: Stack, f: Stack) -> float:
    mse = (_vifb_mse(vi, f) + _vifb_mse(ir, f)) / 2.0
    return float(np.mean(20 * np.log10(255.0 / np.sqrt(mse))))


def ssim(vi: Stack, ir: Stack, f: Stack) -> float:
    """SSIM(vi,F) + SSIM(ir,F): Gaussian 11x11 window, sigma 1.5, L=255, valid region."""
    kwargs = dict(
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255.0,
        channel_axis=0,
    )
    return float(
        structural_similarity(np.ascontiguousarray(vi), f, **kwargs)
        + structural_similarity(np.ascontiguousarray(ir), f, **kwargs)
    )


# --- fused-image-only metrics ---------------------------------------------------------


def avg_gradient(f: Stack) -> float:
    dy, dx = np.gradient(f, axis=(1, 2))
    h, w = f.shape[1:]
    return float(np.mean(np.sqrt((dx**2 + dy**2) / 2).sum(axis=(1, 2)) / ((h - 1) * (w - 1))))


def edge_intensity(f: Stack) -> float:
    """Mean Sobel gradient magnitude (replicated borders)."""
    # per channel (ndimage.sobel on the stack would also smooth across channels)
    gx = ndimage.correlate(f, _SOBEL_ROWS[None], mode="nearest")
    gy = ndimage.correlate(f, _SOBEL_ROWS.T[None], mode="nearest")
    return float(np.mean(np.sqrt(gx**2 + gy**2)))


def spatial_frequency(f: Stack) -> float:
    wide = np.concatenate(list(f), axis=1)  # the channels side by side, as the reference reads
    n = wide.size
    rf = (np.diff(wide, axis=1) ** 2).sum() / n
    cf = (np.diff(wide, axis=0) ** 2).sum() / n
    return float(np.sqrt(rf + cf))


def variance(f: Stack) -> float:
    """Standard deviation of the fused grey levels (the benchmark calls it variance)."""
    return float(np.mean(f.std(axis=(1, 2))))


# --- edge / perceptual metrics ----------------------------------------------------------


def _conv_same(stack: Stack | np.ndarray, kernel: np.ndarray, correlate: bool = False):
    """Per-channel 2-D 'same' filtering with zero padding (MATLAB conv2 / filter2)."""
    op = ndimage.correlate if correlate else ndimage.convolve
    return op(stack, kernel[None], mode="constant", cval=0.0)


def _edge_strength_orientation(stack: Stack) -> tuple[np.ndarray, np.ndarray]:
    sx = _conv_same(stack, _SOBEL_COLS)
    sy = _conv_same(stack, _SOBEL_ROWS)
    g = np.sqrt(sx**2 + sy**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(sx == 0, np.pi / 2, np.arctan(sy / np.where(sx == 0, 1.0, sx)))
    return g, a


def qabf(vi: Stack, ir: Stack, f: Stack) -> float:
    """Xydeas-Petrovic edge preservation Q^{AB/F} (reference parameters and quirks)."""
    tg, kg, dg, ta, ka, da = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8
    gf, af = _edge_strength_orientation(255.0 * f)
    num = np.zeros(f.shape[0])
    den = np.zeros(f.shape[0])
    for src in (vi, ir):
        gs, as_ = _edge_strength_orientation(255.0 * src)
        with np.errstate(divide="ignore", invalid="ignore"):
            # reference: ratio of the smaller strength to the larger; equal strengths give gF
            rel = np.where(gs > gf, gf / gs, np.where(gs == gf, gf, gs / gf))
        orient = 1 - np.abs(as_ - af) / (np.pi / 2)
        q = (tg / (1 + np.exp(kg * (rel - dg)))) * (ta / (1 + np.exp(ka * (orient - da))))
        num += (q * gs).sum(axis=(1, 2))
        den += gs.sum(axis=(1, 2))
    return float(np.mean(num / den))


def _normalize255(stack: Stack) -> Stack:
    """Per-channel min-max stretch to 0..255, rounded (the reference's ``normalize1``)."""
    lo = stack.min(axis=(1, 2), keepdims=True)
    hi = stack.max(axis=(1, 2), keepdims=True)
    zero = (hi == 0) & (lo == 0)
    span = np.where(hi > lo, hi - lo, np.inf)
    return np.where(zero, stack, np.round((stack - lo) / span * 255))


def _radial_frequency(h: int, w: int, scale_h: float, scale_w: float) -> np.ndarray:
    """|frequency| on MATLAB's ``freqspace`` grid (centred), scaled per axis."""
    u = (np.arange(w) - w // 2) * 2.0 / w * scale_w
    v = (np.arange(h) - h // 2) * 2.0 / h * scale_h
    return np.sqrt(u[None, :] ** 2 + v[:, None] ** 2)


def _filter_centered(stack: Stack, response: np.ndarray) -> np.ndarray:
    """Apply a centred frequency response (complex result, as the reference keeps it)."""
    return sfft.ifft2(sfft.fft2(stack) * np.fft.ifftshift(response)[None])


def _block_reduce(x: np.ndarray, size: int, mean: bool) -> np.ndarray:
    """Per-channel sum / mean over size x size blocks, zero-padding partial blocks."""
    c, h, w = x.shape
    hp, wp = -(-h // size) * size, -(-w // size) * size
    padded = np.zeros((c, hp, wp), dtype=x.dtype)
    padded[:, :h, :w] = x
    blocks = padded.reshape(c, hp // size, size, wp // size, size)
    out = blocks.sum(axis=(2, 4))
    return out / (size * size) if mean else out


def qcv(vi: Stack, ir: Stack, f: Stack) -> float:
    """Chen-Varshney regional CSF-weighted distortion (lower is better)."""
    window, alpha = 16, 5
    a, b, fu = _normalize255(vi), _normalize255(ir), _normalize255(f)
    h, w = a.shape[1:]
    g = [
        np.hypot(_conv_same(x, _SOBEL_COLS, True), _conv_same(x, _SOBEL_ROWS, True)) for x in (a, b)
    ]
    saliency = [_block_reduce(gi**alpha, window, mean=False) for gi in g]
    r = _radial_frequency(h, w, h / 8, w / 8)
    csf = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))  # Mannos-Sakrison
    dist = [_block_reduce(_filter_centered(x - fu, csf) ** 2, window, mean=True) for x in (a, b)]
    q = (saliency[0] * dist[0] + saliency[1] * dist[1]).sum(axis=(1, 2)) / (
        saliency[0] + saliency[1]
    ).sum(axis=(1, 2))
    return float(np.mean(q.real))


def _gaussian_31(sigma: float) -> np.ndarray:
    x = np.arange(-15, 16)
    return np.exp(-(x[None, :] ** 2 + x[:, None] ** 2) / (2 * sigma**2)) / (2 * np.pi * sigma**2)


def qcb(vi: Stack, ir: Stack, f: Stack) -> float:
    """Chen-Blum CSF-filtered local-contrast preservation."""
    f0, f1, a_ = 15.3870, 1.3456, 0.7622
    z = 1e-4  # local-contrast response C^3 / (C^2 + Z)
    srcs = [_normalize255(x) for x in (vi, ir, f)]
    h, w = f.shape[1:]
    r = _radial_frequency(h, w, h / 30, w / 30)
    sd = np.exp(-((r / f0) ** 2)) - a_ * np.exp(-((r / f1) ** 2))
    # filter2(G, x, 'same') with zero padding, as one padded FFT shared by both Gaussians
    shape = (sfft.next_fast_len(h + 30), sfft.next_fast_len(w + 30))
    kernels = [sfft.fft2(_gaussian_31(s), shape) for s in (2.0, 4.0)]

    def contrast(x: Stack) -> np.ndarray:
        spectrum = sfft.fft2(_filter_centered(x, sd), shape)
        num, den = (sfft.ifft2(spectrum * k)[:, 15 : 15 + h, 15 : 15 + w] for k in kernels)
        c = np.abs(num / den - 1)
        c2 = c * c
        return c2 * c / (c2 + z)

    c1, c2, cf = (contrast(x) for x in srcs)
    with np.errstate(divide="ignore", invalid="ignore"):
        q1 = np.where(c1 < cf, c1 / cf, cf / c1)
        q2 = np.where(c2 < cf, c2 / cf, cf / c2)
        lam1 = c1**2 / (c1**2 + c2**2)
        lam2 = c2**2 / (c1**2 + c2**2)
        quality = lam1 * q1 + lam2 * q2
    return float(np.mean(quality.mean(axis=(1, 2))))


# --- extra metrics (not in VIFB's table) ------------------------------------------------


def _gaussian_window(n: int, sigma: float) -> np.ndarray:
    x = np.arange(n) - (n - 1) / 2
    g = np.exp(-(x[None, :] ** 2 + x[:, None] ** 2) / (2 * sigma**2))
    return g / g.sum()


def _vif_pixel(ref: Stack, dist: Stack) -> np.ndarray:
    """(C,) pixel-domain multi-scale VIF of ``dist`` w.r.t. ``ref`` (Sheikh & Bovik)."""
    sigma_nsq, eps = 2.0, 1e-10
    num = np.zeros(ref.shape[0])
    den = np.zeros(ref.shape[0])
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = _gaussian_window(n, n / 5)[None]

        def valid(x: np.ndarray, win: np.ndarray = win) -> np.ndarray:
            return signal.fftconvolve(x, win, mode="valid", axes=(1, 2))

        if scale > 1:
            ref, dist = valid(ref)[:, ::2, ::2], valid(dist)[:, ::2, ::2]
        mu1, mu2 = valid(ref), valid(dist)
        s1 = np.maximum(valid(ref * ref) - mu1**2, 0)
        s2 = np.maximum(valid(dist * dist) - mu2**2, 0)
        s12 = valid(ref * dist) - mu1 * mu2
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        flat1 = s1 < eps
        g[flat1], sv[flat1], s1[flat1] = 0, s2[flat1], 0
        flat2 = s2 < eps
        g[flat2], sv[flat2] = 0, 0
        neg = g < 0
        sv[neg], g[neg] = s2[neg], 0
        sv = np.maximum(sv, eps)
        num += np.log10(1 + g**2 * s1 / (sv + sigma_nsq)).sum(axis=(1, 2))
        den += np.log10(1 + s1 / sigma_nsq).sum(axis=(1, 2))
    return num / den


def vif(vi: Stack, ir: Stack, f: Stack) -> float:
    """VIF(vi, F) + VIF(ir, F)."""
    return float(np.mean(_vif_pixel(vi, f) + _vif_pixel(ir, f)))


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=(1, 2), keepdims=True)
    b = b - b.mean(axis=(1, 2), keepdims=True)
    den = np.sqrt((a * a).sum(axis=(1, 2)) * (b * b).sum(axis=(1, 2)))
    return np.divide((a * b).sum(axis=(1, 2)), den, out=np.zeros(a.shape[0]), where=den > 0)


def scd(vi: Stack, ir: Stack, f: Stack) -> float:
    """Sum of the correlations of differences: corr(F-ir, vi) + corr(F-vi, ir)."""
    return float(np.mean(_corr(f - ir, vi) + _corr(f - vi, ir)))


_FUSED_ONLY: dict[str, Callable[[Stack], float]] = {
    "Avg_gradient": avg_gradient,
    "Edge_intensity": edge_intensity,
    "Entropy": entropy,
    "Spatial_frequency": spatial_frequency,
    "Variance": variance,
}
_WITH_SOURCES: dict[str, Callable[[Stack, Stack, Stack], float]] = {
    "Cross_entropy": cross_entropy,
    "Mutinf": mutinf,
    "Psnr": psnr,
    "Qabf": qabf,
    "Qcb": qcb,
    "Qcv": qcv,
    "Rmse": rmse,
    "Ssim": ssim,
    "VIF": vif,
    "SCD": scd,
}


def compute(
    visible: np.ndarray,
    infrared: np.ndarray,
    fused: np.ndarray,
    metrics: tuple[str, ...] | list[str] = METRICS,
) -> dict[str, float]:
    """All (or the named) metrics of one fused image; uint8 (H,W) or (H,W,3) RGB inputs."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown fusion metrics {sorted(unknown)}; known: {METRICS}")
    vi, ir, f = _stacks(np.asarray(visible), np.asarray(infrared), np.asarray(fused))
    out: dict[str, float] = {}
    for name in metrics:
        if name in _FUSED_ONLY:
            out[name] = _FUSED_ONLY[name](f)
        else:
            out[name] = _WITH_SOURCES[name](vi, ir, f)
    return out


def compute_no_reference(fused: np.ndarray) -> dict[str, float]:
    """The metrics that need only the fused image (streams and folders without sources)."""
    f = np.asarray(fused)
    if f.ndim not in (2, 3):
        raise ValueError(f"fused must be (H, W) or (H, W, 3), got {f.shape}")
    stack = _channels_first(f)
    return {name: _FUSED_ONLY[name](stack) for name in NO_REFERENCE_METRICS}


class FusionMeter:
    """Running per-metric means over frames (what evaluators report for their fused images)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def update(self, scores: dict[str, float]) -> None:
        for k, v in scores.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: v / self.count for k, v in self.sums.items()} if self.count else {}
