"""Command line: ``python -m lomix_core {train,evaluate,reproduce,check} --help``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import data, models, profiles, supervision
from .evaluation import CONVENTION, evaluate, mean_dice, mean_hd95, per_class
from .training import TrainConfig, train


def _train(args) -> int:
    config = TrainConfig(supervision=args.supervision, model=args.model, dataset=args.dataset,
                         operators=args.operators, weighting=args.weighting, epochs=args.epochs,
                         max_steps_per_epoch=args.max_steps_per_epoch, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, seed=args.seed, device=args.device, amp=args.amp,
                         data_kwargs=args.data_kwargs, model_kwargs=_model_kwargs(args),
                         out_dir=args.out_dir, run_name=args.run_name)
    run = train(config, resume=args.resume)
    metrics = run.record["metrics"]
    print(f"{config.name}: best epoch {metrics['best_epoch']}, val Dice {metrics['val_dice']:.4f}, "
          f"test Dice {metrics['test_dice']:.4f} -> {run.run_dir}")
    return 0


def _model_kwargs(args) -> dict:
    kwargs = dict(args.model_kwargs)
    if args.pretrained:
        kwargs["pretrained"] = True
    if args.weights:
        kwargs["weights"] = args.weights
    return kwargs


def _evaluate(args) -> int:
    import torch

    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist; expected a best.pt or last.pt "
                                f"written by train (outputs/runs/<run name>/best.pt)")
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    config = TrainConfig(**checkpoint["config"])
    dataset = data.load(config.dataset, split=args.split, **config.data_kwargs)
    model = models.build(config.model, dataset.in_channels, dataset.num_classes, **config.model_kwargs)
    model.load_state_dict(checkpoint["model"])
    results = evaluate(model, dataset)
    print(per_class(results).round(4).to_string())
    print(f"mean Dice ({args.split}): {mean_dice(results):.4f}, mean HD95: {mean_hd95(results):.2f}\n{CONVENTION}")
    return 0


def _reproduce(args) -> int:
    from .reproduce import reproduce

    return reproduce(args.profile, notebooks_dir=args.notebooks, output_root=args.output_root, only=args.only,
                     cell_timeout=args.cell_timeout)


def _check(args) -> int:
    from .data.nifti_folder import check_folder, folder_summary

    problems = check_folder(args.path)
    print("\n".join(problems) if problems else folder_summary(args.path))
    return 1 if problems else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m lomix_core", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    defaults = TrainConfig()

    p = sub.add_parser("train", help="train one model with one supervision preset")
    p.add_argument("--supervision", default=defaults.supervision, choices=list(supervision.PRESETS))
    p.add_argument("--model", default=defaults.model, choices=models.available())
    p.add_argument("--dataset", default=defaults.dataset, choices=data.available())
    p.add_argument("--operators", nargs="+", default=None, help="fusion operators (default: per preset)")
    p.add_argument("--weighting", default=None, help=f"one of {supervision.WEIGHTINGS} (default: per preset)")
    for name in ("epochs", "batch_size", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument("--max-steps-per-epoch", type=int, default=None)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    p.add_argument("--device", default=defaults.device, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    p.add_argument("--data-kwargs", type=_json_object, default={}, help='JSON, e.g. \'{"size": 64}\'')
    p.add_argument("--model-kwargs", type=_json_object, default={}, help='JSON, e.g. \'{"width": 8}\'')
    p.add_argument("--pretrained", action="store_true",
                   help="ImageNet weights for a timm encoder (needs internet or the Hugging Face cache)")
    p.add_argument("--weights", default=None, metavar="PATH", help="encoder weights from a local timm state_dict")
    p.add_argument("--out-dir", default=defaults.out_dir)
    p.add_argument("--run-name", default=None)
    p.add_argument("--resume", action="store_true",
                   help="continue from the run folder's last.pt if there is one (same settings required); "
                        "a finished run is scored again, not retrained")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score a saved checkpoint on a split")
    p.add_argument("checkpoint", help="a best.pt written by train")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("reproduce", help="run the notebook series with papermill and write REPORT.md")
    p.add_argument("--profile", default="auto", choices=list(profiles.PROFILES))
    p.add_argument("--notebooks", default="notebooks", help="folder of NN_name.ipynb notebooks")
    p.add_argument("--output-root", default="outputs", help="results go to OUTPUT_ROOT/<profile>/")
    p.add_argument("--only", nargs="+", default=None, help="run only these notebooks (stem or number prefix)")
    p.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                   help="report a cell still running after this long as failed (default: the profile's; "
                        "smoke 600, cpu 3600, full none)")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("check", help="list every problem in a NIfTI dataset folder (bring your own data)")
    p.add_argument("path", help="folder with dataset.json, imagesTr/, labelsTr/ (and imagesTs/, labelsTs/)")
    p.set_defaults(func=_check)
    return top


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}; expected e.g. '{{\"size\": 64}}'")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"size\": 64}}', got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as error:
        # Bad data, a bad setting or a missing file: the message already names it and what was
        # expected, so a traceback would only bury it. Exit 2, like argparse's own usage errors.
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
