"""Image and codebook quality numbers of the frame tokenizer and the world model: PSNR, SSIM, usage, FID.

Why hand-written: the pinned dependency set has no image-quality library (scikit-image, piq,
torchmetrics' image metrics and clean-fid are all absent, and torchvision is not allowed), and the
formulas are short and standard:

  * PSNR = 10 log10(255^2 / MSE) per image over all pixels and channels, on uint8 images.
  * SSIM (Wang, Bovik, Sheikh, Simoncelli 2004): an 11x11 Gaussian window with sigma 1.5,
    C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 255, computed per channel over the 'valid' window
    positions (no padding, as in the paper's reference implementation) and averaged; per image.
  * Codebook usage = distinct codes used / codebook size; perplexity = exp(entropy of the code
    histogram) (= the number of equally used entries that would give the same entropy).
  * Frechet distance between two Gaussians fitted to features (the FID formula; the features
    come from a user-supplied Inception network, see tools/eval_world.py).
"""

from __future__ import annotations

import numpy as np

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
PIXEL_MAX = 255.0


def _as_batch(images: np.ndarray) -> np.ndarray:
    """uint8/float (B, H, W, 3) or (H, W, 3) -> float64 (B, H, W, 3) in 0..255."""
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected images (B, H, W, 3) or (H, W, 3), got shape {x.shape}")
    return x


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of uint8 image batches (B, H, W, 3); identical images give +inf."""
    mse = ((_as_batch(a) - _as_batch(b)) ** 2).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(PIXEL_MAX**2 / mse)


def gaussian_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """(size,) Gaussian weights summing to 1; the 2-D SSIM window is its outer product with itself."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(t: np.ndarray) -> np.ndarray:
    """Gaussian-window means over the 'valid' positions of (B, H, W, C): separable, rows then columns."""
    from scipy.ndimage import correlate1d

    g, r = gaussian_1d(), SSIM_WINDOW // 2
    out = correlate1d(correlate1d(t, g, axis=1, mode="constant"), g, axis=2, mode="constant")
    return out[:, r:-r, r:-r]  # drop the border, where the window would read the zero padding


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image mean SSIM of two image batches (B, H, W, 3) in 0..255 (see the module doc)."""
    x, y = _as_batch(a), _as_batch(b)
    if x.shape != y.shape:
        raise ValueError(f"ssim: image shapes differ, {x.shape} vs {y.shape}")
    if min(x.shape[1:3]) < SSIM_WINDOW:
        raise ValueError(f"ssim: images of {x.shape[1:3]} pixels are smaller than the {SSIM_WINDOW}-pixel window")
    c1, c2 = (SSIM_K1 * PIXEL_MAX) ** 2, (SSIM_K2 * PIXEL_MAX) ** 2
    mu_x, mu_y = _blur(x), _blur(y)
    var_x = _blur(x * x) - mu_x**2
    var_y = _blur(y * y) - mu_y**2
    cov = _blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.reshape(len(x), -1).mean(axis=1)


def codebook_stats(codes: np.ndarray, codebook_size: int) -> dict[str, float]:
    """Usage (share of entries used at least once), entries used, and perplexity of a set of codes."""
    flat = np.asarray(codes, dtype=np.int64).ravel()
    counts = np.bincount(flat, minlength=codebook_size)[:codebook_size]
    p = counts[counts > 0] / max(flat.size, 1)
    used = int((counts > 0).sum())
    return {"usage": used / codebook_size, "entries_used": used, "perplexity": float(np.exp(-(p * np.log(p)).sum()))}


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of Gaussians fitted to (N, F) features."""
    from scipy import linalg

    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"Frechet distance needs >= 2 samples per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # singular product (few samples): offset as the FID reference code does
        offset = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))
