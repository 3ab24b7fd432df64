"""Parameter counts of the timm + EMCAD models, encoder and decoder apart, as a markdown table.

    python benchmarks/param_counts.py
    python benchmarks/param_counts.py --classes 4 --in-channels 1 --models pvt_v2_b2_emcad

The decoder column counts the EMCAD blocks; the 1×1 logits heads (one per stage, their size
depends on the number of classes) and the grayscale stem (only when in_channels != 3) have
their own columns. For PVT-v2-b2 the official numbers (as quoted in the kit's issue) sit beside
ours: backbone 24,849,856, decoder 1,913,515. Our decoder without its heads lands exactly on the
latter, so the official count appears to leave the heads out too. With a ResNet-50 the decoder
is larger than the encoder: EMCAD keeps each stage at its encoder feature's width, here 2048.

Models are built on PyTorch's "meta" device: parameters get shapes but no memory and no
initialisation, so even PVT-v2-b5 (80 M parameters) is counted in a moment.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lomix_core as lx  # noqa: E402

MODELS = [f"pvt_v2_b{i}_emcad" for i in range(6)] + ["resnet18_emcad", "resnet34_emcad", "resnet50_emcad"]
OFFICIAL = {"pvt_v2_b2_emcad": {"encoder": 24_849_856, "decoder": 1_913_515}}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # parameters() visits a shared module once


def measure(name: str, in_channels: int, num_classes: int) -> dict[str, int]:
    with torch.device("meta"):
        model = lx.models.build(name, in_channels, num_classes)
    heads = count(model.decoder.heads)
    return {"encoder": count(model.encoder), "decoder": count(model.decoder) - heads, "heads": heads,
            "stem": count(model.stem), "total": count(model)}


def difference(ours: int, official: int | None) -> str:
    if official is None:
        return "–"
    return f"{official:,} ({100 * (ours - official) / official:+.1f} %)"


def table(rows: dict[str, dict[str, int]]) -> str:
    lines = ["| model | encoder | decoder | heads | stem | total | official encoder | official decoder |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, n in rows.items():
        official = OFFICIAL.get(name, {})
        lines.append(f"| {name} | {n['encoder']:,} | {n['decoder']:,} | {n['heads']:,} | {n['stem']:,} | "
                     f"{n['total']:,} | {difference(n['encoder'], official.get('encoder'))} | "
                     f"{difference(n['decoder'], official.get('decoder'))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=9, help="number of classes, sets the heads' size (default 9)")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels; != 3 adds the stem (default 3)")
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS, metavar="NAME",
                        help=f"models to count (default: all of {', '.join(MODELS)})")
    args = parser.parse_args(argv)
    rows = {name: measure(name, args.in_channels, args.classes) for name in args.models}
    print(f"Parameters with in_channels={args.in_channels}, num_classes={args.classes}; "
          f"official: PVT-v2-b2 + EMCAD as published, (ours − official) / official in brackets.\n")
    print(table(rows))


if __name__ == "__main__":
    main()
