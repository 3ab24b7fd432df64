"""Procedural abdominal-CT-like phantom for training small segmentation models on a CPU.

Real abdominal CT data sets (e.g. Synapse) are large, licensed and slow to train on. This
module draws synthetic subjects instead: each subject is a short stack of axial slices
through a body containing eight labelled organs, in the Synapse class order. The phantom
keeps the properties that make abdominal segmentation a *multi-scale* problem:

* organ sizes differ by two orders of magnitude (a large liver, a small aorta);
* some organs look alike (liver and spleen share a grey level), so a model must use shape
  and position, not intensity alone;
* an unlabelled bright distractor (the spine) sits next to a labelled bright organ (the aorta).

Conventions
-----------
Coordinates are normalised: ``x`` runs from -1 (image left) to +1 (image right), ``y`` from
-1 (image top, anterior) to +1 (image bottom, posterior), and ``z`` from -1 (inferior, first
slice) to +1 (superior, last slice). As in radiology, image right is the patient's left, so
the liver appears on the image left and the spleen and stomach on the image right.

Every organ is an ellipsoid in (x, y, z), optionally bent (the pancreas strongly, the liver
slightly) and tilted (its centre drifts with z). A slice at depth ``z`` shows the
ellipsoid's cross-section, so organs grow and shrink smoothly through a subject and each
organ covers its own range of slices.

Where ellipsoids overlap, the organ painted later wins. The painting order is the order of
``ORGAN_PRIORS``: large organs first, then smaller ones, so a small organ is never hidden
behind a large one (liver, spleen, stomach, right kidney, left kidney, pancreas,
gallbladder, aorta). Organs are clipped to the inside of the body's fat rim.

Determinism: all randomness comes from one ``np.random.default_rng(subject_seed)``. The
anatomy, deformation and bias field are drawn first, from a number of random values that
does not depend on ``num_slices`` or ``size``, so one seed gives the same anatomy at any
resolution; only the texture and the noise are drawn per voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "background",
    "spleen",
    "right_kidney",
    "left_kidney",
    "gallbladder",
    "pancreas",
    "liver",
    "stomach",
    "aorta",
)

# Grey levels of the unlabelled tissues (the image is roughly in [0, 1]).
AIR = 0.02
FAT = 0.25
SOFT_TISSUE = 0.45
BONE = 0.95

# Random variation of every organ around its prior (see ``_sample_organ``).
CENTRE_JITTER = 0.05  # in-plane shift, normalised units
SCALE_RANGE = (0.85, 1.15)  # overall size factor
ASPECT_RANGE = (0.9, 1.1)  # stretches one in-plane axis and shrinks the other
ANGLE_JITTER_DEG = 12.0
DRIFT_MAX = 0.08  # in-plane shift of the centre per unit of z: organs are oblique
INTENSITY_JITTER = 0.03

# Image formation.
ELASTIC_GRID = (2, 5, 5)  # coarse (z, y, x) grid of the random deformation
ELASTIC_AMPLITUDE = 0.03  # normalised units, about 1.5 pixels at size 96
ELASTIC_LIMIT = 3 * ELASTIC_AMPLITUDE  # displacements are clipped here; see ``_organ_box``
BIAS_GRID = (2, 4, 4)
BIAS_AMPLITUDE = 0.08  # relative: the bias field is 1 +/- a few times this
TEXTURE_CELL = 6  # pixels per node of the texture's coarse grid
TEXTURE_AMPLITUDE = 0.04
NOISE_SIGMA = 0.025


@dataclass(frozen=True)
class OrganPrior:
    """The plausible range of one organ's ellipsoid; each subject draws its own within it."""

    name: str
    centre: tuple[float, float]  # nominal in-plane centre (x, y)
    semi_axes: tuple[float, float]  # nominal in-plane semi-axes: along and across the long axis
    angle_deg: float  # nominal direction of the long axis, from +x towards +y
    z_centre: tuple[float, float]  # range of the centre depth
    z_half: tuple[float, float]  # range of the half-extent in z: how many slices it covers
    intensity: float  # mean grey level
    bend: float = 0.0  # curvature of the long axis (>0: its ends curve posteriorly)


# Painting order: later entries overwrite earlier ones where ellipsoids overlap.
# The z ranges keep every organ's central part inside the volume, so each organ shows
# in at least two slices even when a subject has only eight.
ORGAN_PRIORS: tuple[OrganPrior, ...] = (
    OrganPrior("liver", (-0.46, -0.04), (0.44, 0.36), -25.0, (0.1, 0.4), (0.9, 1.2), 0.60, -0.3),
    OrganPrior("spleen", (0.62, 0.16), (0.21, 0.11), 125.0, (0.2, 0.45), (0.5, 0.7), 0.58),
    OrganPrior("stomach", (0.36, -0.26), (0.26, 0.16), 30.0, (0.0, 0.35), (0.6, 0.85), 0.40),
    OrganPrior("right_kidney", (-0.42, 0.36), (0.17, 0.11), 65.0, (-0.4, -0.1), (0.5, 0.65), 0.70),
    OrganPrior("left_kidney", (0.42, 0.34), (0.17, 0.11), 115.0, (-0.3, 0.0), (0.5, 0.65), 0.70),
    OrganPrior("pancreas", (0.12, 0.12), (0.33, 0.06), -8.0, (-0.1, 0.2), (0.4, 0.55), 0.52, 1.0),
    OrganPrior("gallbladder", (-0.22, -0.3), (0.1, 0.065), 40.0, (-0.35, 0.0), (0.45, 0.6), 0.30),
    OrganPrior("aorta", (0.06, 0.3), (0.07, 0.07), 0.0, (0.0, 0.0), (10.0, 10.0), 0.78),
)


@dataclass(frozen=True)
class Organ:
    """One subject's organ: an ellipsoid with a class label and a grey level."""

    label: int
    centre: tuple[float, float, float]  # (x, y, z)
    semi_axes: tuple[float, float, float]  # along, across, depth
    angle: float  # radians
    drift: tuple[float, float]  # in-plane shift of the centre per unit of z
    bend: float
    intensity: float


@dataclass(frozen=True)
class Body:
    """The body outline (an elliptic cylinder with a fat rim) and the spine inside it."""

    centre_y: float
    semi_axes: tuple[float, float]
    rim: float  # thickness of the subcutaneous fat layer
    spine_centre_y: float
    spine_radius: float


def _sample_body(rng: np.random.Generator) -> Body:
    """Draw a body outline; its size varies so organ positions relative to it vary too."""
    return Body(
        centre_y=rng.uniform(0.05, 0.1),
        semi_axes=(rng.uniform(0.82, 0.92), rng.uniform(0.64, 0.74)),
        rim=rng.uniform(0.035, 0.06),
        spine_centre_y=rng.uniform(0.5, 0.55),
        spine_radius=rng.uniform(0.09, 0.12),
    )


def _sample_organ(rng: np.random.Generator, prior: OrganPrior) -> Organ:
    """Draw one subject's version of an organ: shifted, rescaled, rotated and tilted."""
    scale = rng.uniform(*SCALE_RANGE)
    aspect = rng.uniform(*ASPECT_RANGE)
    shift = rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, size=2)
    drift = rng.uniform(-DRIFT_MAX, DRIFT_MAX, size=2)
    angle_deg = prior.angle_deg + rng.uniform(-ANGLE_JITTER_DEG, ANGLE_JITTER_DEG)
    return Organ(
        label=CLASS_NAMES.index(prior.name),
        centre=(
            prior.centre[0] + shift[0],
            prior.centre[1] + shift[1],
            rng.uniform(*prior.z_centre),
        ),
        semi_axes=(
            prior.semi_axes[0] * scale * aspect,
            prior.semi_axes[1] * scale / aspect,
            rng.uniform(*prior.z_half),
        ),
        angle=np.deg2rad(angle_deg),
        drift=(drift[0], drift[1]),
        bend=prior.bend,
        intensity=prior.intensity + rng.uniform(-INTENSITY_JITTER, INTENSITY_JITTER),
    )


def _upsample_axis(field: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Linearly resample ``field`` along ``axis`` from its nodes to ``n_out`` points.

    The first and last nodes land on the first and last output points; every point in
    between is a blend of its two neighbouring nodes. Doing this along each axis in turn is
    bilinear (or trilinear) interpolation, with no SciPy.
    """
    n_in = field.shape[axis]
    positions = np.linspace(0.0, n_in - 1, n_out)
    lower = np.minimum(np.floor(positions).astype(int), n_in - 2)
    fraction = (positions - lower).reshape([-1 if a == axis else 1 for a in range(field.ndim)])
    return (
        np.take(field, lower, axis=axis) * (1.0 - fraction)
        + np.take(field, lower + 1, axis=axis) * fraction
    )


def _smooth_field(
    rng: np.random.Generator, coarse_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> np.ndarray:
    """A smooth random field: standard-normal values on a coarse grid, linearly upsampled.

    The coarse grid sets the length scale (few nodes: slow variation, many: fine texture),
    and the number of random draws depends only on ``coarse_shape``.
    """
    field = rng.standard_normal(coarse_shape)
    for axis in reversed(range(field.ndim)):  # last axis first: the early steps stay small
        field = _upsample_axis(field, out_shape[axis], axis)
    return field


def _deformed_coordinates(
    rng: np.random.Generator, num_slices: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates: x and y of shape [slices, size, size], z of shape [slices].

    The in-plane coordinates are displaced by a smooth random field before any shape is
    rasterised. This is the elastic deformation: warping the coordinates instead of the
    finished image keeps the labels exact and deforms image and label identically. The
    field varies smoothly with z too, so neighbouring slices stay consistent.
    """
    centres = (np.arange(size) + 0.5) * (2.0 / size) - 1.0
    y, x = np.meshgrid(centres, centres, indexing="ij")
    z = (np.arange(num_slices) + 0.5) * (2.0 / num_slices) - 1.0
    shape = (num_slices, size, size)
    dx = _displacement(rng, shape)
    dy = _displacement(rng, shape)
    return x + dx, y + dy, z


def _displacement(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """One component of the elastic deformation, clipped so ``_organ_box`` can bound it."""
    field = ELASTIC_AMPLITUDE * _smooth_field(rng, ELASTIC_GRID, shape)
    return np.clip(field, -ELASTIC_LIMIT, ELASTIC_LIMIT)


def _inside_ellipse(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """True where (u, v), relative to an ellipse's centre, lies inside semi-axes (a, b)."""
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _pixel_range(low: float, high: float, size: int) -> slice:
    """The pixels whose centres can lie in [low, high] (normalised units), within the image."""
    first = int(np.floor((low + 1.0) * size / 2.0))
    stop = int(np.ceil((high + 1.0) * size / 2.0))
    return slice(max(first, 0), min(max(stop, 0), size))


def _organ_box(organ: Organ, z: np.ndarray, size: int) -> tuple[slice, slice, slice] | None:
    """The (slices, rows, columns) box that can contain the organ; None if no slice cuts it.

    Testing only this box instead of every voxel is what keeps generation cheap: most
    organs fill a few per cent of the volume. The box is conservative: it covers the
    ellipsoid's largest in-plane reach (bend included), the drift of its centre over the
    slices it spans, and the largest elastic displacement.
    """
    cx, cy, cz = organ.centre
    along, across, depth = organ.semi_axes
    cut = np.flatnonzero(np.abs(z - cz) < depth)
    if cut.size == 0:
        return None
    dz = z[cut] - cz
    reach = np.hypot(along, across + abs(organ.bend) * along**2) + ELASTIC_LIMIT
    xs = cx + organ.drift[0] * dz
    ys = cy + organ.drift[1] * dz
    return (
        slice(cut[0], cut[-1] + 1),
        _pixel_range(ys.min() - reach, ys.max() + reach, size),
        _pixel_range(xs.min() - reach, xs.max() + reach, size),
    )


def _organ_mask(organ: Organ, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The voxels inside an organ's (bent, tilted) ellipsoid; z holds one depth per slice."""
    cx, cy, cz = organ.centre
    along, across, depth = organ.semi_axes
    dz = z[:, None, None] - cz
    dx = x - (cx + organ.drift[0] * dz)
    dy = y - (cy + organ.drift[1] * dz)
    cos, sin = np.cos(organ.angle), np.sin(organ.angle)
    u = cos * dx + sin * dy  # along the long axis
    v = -sin * dx + cos * dy - organ.bend * u**2  # across it; the bend curves the long axis
    return (u / along) ** 2 + (v / across) ** 2 + (dz / depth) ** 2 <= 1.0


def _paint(
    body: Body, organs: list[Organ], x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise body, spine and organs into (label, mean grey level, body mask)."""
    ax, ay = body.semi_axes
    dy_body = y - body.centre_y
    outer = _inside_ellipse(x, dy_body, ax, ay)
    inner = _inside_ellipse(x, dy_body, ax - body.rim, ay - body.rim)
    radius = body.spine_radius
    spine = _inside_ellipse(x, y - body.spine_centre_y, radius, 0.85 * radius)

    mean = np.full(x.shape, AIR)
    mean[outer] = FAT
    mean[inner] = SOFT_TISSUE
    mean[spine & inner] = BONE  # unlabelled distractor: stays background in the label

    label = np.zeros(x.shape, dtype=np.uint8)
    for organ in organs:  # later organs overwrite earlier ones
        box = _organ_box(organ, z, x.shape[-1])
        if box is None:
            continue
        mask = _organ_mask(organ, x[box], y[box], z[box[0]]) & inner[box]
        label[box][mask] = organ.label  # label[box] is a view, so this writes into label
        mean[box][mask] = organ.intensity
    return label, mean, outer


def make_subject(
    subject_seed: int, num_slices: int = 16, size: int = 96
) -> tuple[np.ndarray, np.ndarray]:
    """Generate one synthetic subject.

    Returns ``(image, label)``: image float32 ``[num_slices, size, size]`` in [0, 1], label
    uint8 of the same shape with values 0..8 indexing ``CLASS_NAMES``. The same arguments
    always give bit-identical arrays.
    """
    if num_slices < 1 or size < 1:
        raise ValueError(f"need num_slices >= 1 and size >= 1, got {num_slices} and {size}")
    rng = np.random.default_rng(subject_seed)
    shape = (num_slices, size, size)

    # Resolution-independent draws first (see the module docstring).
    body = _sample_body(rng)
    organs = [_sample_organ(rng, prior) for prior in ORGAN_PRIORS]
    x, y, z = _deformed_coordinates(rng, num_slices, size)
    bias = 1.0 + BIAS_AMPLITUDE * _smooth_field(rng, BIAS_GRID, shape)

    label, mean, body_mask = _paint(body, organs, x, y, z)

    nodes = max(2, size // TEXTURE_CELL)
    texture_grid = (max(2, num_slices // 2), nodes, nodes)
    texture = TEXTURE_AMPLITUDE * _smooth_field(rng, texture_grid, shape)
    noise = rng.normal(0.0, NOISE_SIGMA, size=shape)
    image = (mean + texture * body_mask) * bias + noise
    return np.clip(image, 0.0, 1.0).astype(np.float32), label
