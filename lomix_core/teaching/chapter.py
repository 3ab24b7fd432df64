"""A chapter's start-up: resolve its profile, check what it needs, pick its output folder and say
where it runs and for how long, in one line at the top of every notebook (:func:`start`)."""
from __future__ import annotations

import os
from pathlib import Path

from ..pipeline import profiles
from ..foundations.machine import device_name
from ..models import spec

OUTPUT_ENV = "LOMIX_OUTPUT_DIR"
# The machine profiles.Profile.measured_s was measured on, with no runs cached (the cpu series at
# 2172c82 on idle cores, chapter 03 with six seeds: 18.2 min in all). No GPU has run the
# colab or full series yet: before it trains, each chapter prints an
# estimate from steps it times on the device at hand (lx.runtime.estimate).
REFERENCE_MACHINE = "2 cores of an AMD EPYC CPU, no GPU"


def estimate(chapter: str, profile: str) -> str:
    """A sentence on how long ``chapter`` ("03") takes under ``profile``, from measured times."""
    seconds = profiles.get(profile).measured_s.get(chapter)
    if seconds is None:
        return ("run time not measured on a reference machine yet; each training cell estimates it from timed steps"
                + "".join(f"\n{line}" for line in [plan(chapter, profile)] if line))
    amount = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
    # A figure from one machine, labelled with it: on another machine, or this one under load, the
    # estimate a chapter prints before it trains (timed here and now) is the one that counts.
    return (f"took {amount} on {REFERENCE_MACHINE} (nothing cached); a chapter that trains estimates its "
            f"time on this machine before it starts")


def plan(chapter: str, profile: str) -> str | None:
    """Where ``chapter`` sits in ``profile``'s plan of sessions (:attr:`profiles.Profile.sessions`),
    how long its session is estimated to take and what to do; None where the profile plans none."""
    record = profiles.get(profile)
    found = profiles.session(profile, chapter)
    if found is None:
        return None
    number, chapters = found
    hours = sum(record.estimated_h.get(c, 0.0) for c in chapters)
    own = record.estimated_h.get(chapter)
    this = (f"this chapter about {own:.1f} h" if own and own >= 0.05 else
            "this chapter: minutes" if own else "this chapter trains nothing: minutes")
    named = f"chapter{'s' * (len(chapters) > 1)} {', '.join(chapters)}"
    before = (f"; it reads the runs of session{'s' * (number > 2)} "
              f"{', '.join(str(n) for n in range(1, number))} back" if number > 1 else "")
    return (f"{record.name} plan: session {number} of {len(record.sessions)} runs {named}, about "
            f"{hours:.1f} h on {record.planned_on} by benchmarks/profile_hours.py ({this}). Run the session in one "
            f"runtime with Google Drive mounted{before}; if the runtime ends, run the chapter again: finished runs "
            f"are read back and the interrupted one resumes from its last epoch.")


def preflight(profile: str, datasets: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Check, in seconds, what ``profile`` needs before anything trains; one line of error if missing.

    ``datasets`` are those about to be trained on (none: nothing trains, nothing is checked). A
    profile that trains the pretrained encoder needs its ImageNet weights (see
    :mod:`lomix_core.models.weights`), and Synapse must be prepared where a chapter trains on it.
    Returns one line per thing checked, saying where it comes from.
    """
    from ..models import weights

    record = profiles.get(profile)
    found = []
    if datasets and record.comparison.get("model_kwargs", {}).get("pretrained"):
        arch = spec(record.comparison["model"]).encoder
        found.append(f"{arch} ImageNet weights: {weights.check_available(arch, f'the {record.name} profile')}")
    if "synapse" in datasets:
        from ..data import synapse

        try:
            found.append(f"Synapse: {synapse.check_prepared()}")
        except FileNotFoundError as error:
            raise FileNotFoundError(f"the {record.name} profile trains on Synapse's 8 organs: {error}; to get RawData, "
                                    f"{synapse.DOWNLOAD}") from None
    return found


def output_folder(profile: str, output_dir: str | os.PathLike | None = None) -> Path:
    """Where a chapter writes: ``output_dir``; else ``$LOMIX_OUTPUT_DIR/<profile>`` (e.g. a Google Drive
    folder, so that a disconnected Colab session resumes its runs); else ``outputs/<profile>``."""
    if output_dir:
        return Path(output_dir)
    return Path(os.environ.get(OUTPUT_ENV) or "outputs") / profiles.resolve(profile)


def start(chapter: str, profile: str, output_dir: str | None = None,
          datasets: list[str] | tuple[str, ...] = ()) -> tuple[str, Path]:
    """Resolve a chapter's profile and output folder, check what it needs (:func:`preflight`) and
    say where it runs and for how long.

    ``chapter`` is the two-digit number ("03"); ``datasets`` those the chapter trains on. Returns
    ``(profile, output_dir)``, with ``auto`` resolved and the folder from :func:`output_folder`."""
    profile = profiles.resolve(profile)
    output = output_folder(profile, output_dir)
    found = preflight(profile, datasets)
    print(f"chapter {chapter} | profile {profile} | {device_name()} | {estimate(chapter, profile)}"
          + "".join(f"\n{line}" for line in found))
    return profile, output
