"""LoMix inside other training frameworks: :mod:`.monai` (a loss for MONAI's ``DynUNet``) and
:mod:`.nnunet` (nnU-Net v2 trainers, the raw-dataset export and the trainer shim).

Neither is imported by ``import lomix_core``: each needs its optional extra (``pip install
"lomix-kit[monai]"`` or ``"lomix-kit[nnunet]"``) and is imported by name, e.g.
``from lomix_core.integrations.monai import LoMixDeepSupervisionLoss``.
"""
from __future__ import annotations

import importlib.metadata
import re


def require(package: str, extra: str, supported: tuple[str, str] | None = None) -> str:
    """The installed version of ``package``, or one line saying how to install it (and, with
    ``supported = (lowest, below)``, refusing a version outside ``[lowest, below)``)."""
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"{package} is not installed; install the extra with "
                          f'pip install "lomix-kit[{extra}]" (or `make test-integrations`)') from None
    if supported is not None and not (_key(supported[0]) <= _key(version) < _key(supported[1])):
        raise ImportError(f"{package} {version} is not supported; expected {package}>={supported[0]},<{supported[1]} "
                          f'(pip install "lomix-kit[{extra}]")')
    return version


def _key(version: str) -> tuple[int, ...]:
    """(2, 8, 1) for "2.8.1" and "2.8.1.post2"; a pre-release such as "2.9.0rc1" counts as 2.9.0."""
    parts = []
    for part in version.split("."):
        leading = re.match(r"\d+", part)
        if leading is None:
            break
        parts.append(int(leading.group()))
        if leading.end() < len(part):
            break
    return tuple(parts)
