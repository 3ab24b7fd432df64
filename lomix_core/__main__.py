"""Command line: ``python -m lomix_core {train,evaluate,predict,reproduce,check,colab-links,nnunet} --help``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

from .teaching import chapter
from . import data
from .pipeline import profiles
from .data.preprocessing import NATIVE_METHODS
from .pipeline.evaluation import CONVENTION, evaluate, mean_dice, mean_hd95, per_class
from .pipeline.training import TrainConfig, train


def _train(args) -> int:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.metadata["cli"] is not None}
    config = TrainConfig(**{**values, "model_kwargs": _model_kwargs(args)})
    run = train(config, resume=args.resume)
    metrics = run.record["metrics"]
    selected = (f"best epoch {metrics['best_epoch']}, val Dice {metrics['val_dice']:.4f}" if metrics["val_dice"] is not None
                else f"last epoch {metrics['best_epoch']} (no validation split)")
    tested = f"test Dice {metrics['test_dice']:.4f}" if metrics["test_dice"] is not None else "no test split"
    print(f"{config.name}: {selected}, {tested} -> {run.run_dir}")
    return 0


def _model_kwargs(args) -> dict:
    kwargs = dict(args.model_kwargs)
    if args.pretrained:
        kwargs["pretrained"] = True
    if args.weights:
        kwargs["weights"] = args.weights
    return kwargs


def _evaluate(args) -> int:
    from .pipeline.inference import load_checkpoint
    from .foundations.records import save_csv

    trained = load_checkpoint(args.checkpoint, device=args.device)
    config, trained_classes = trained.config, trained.preprocessing.class_names
    name = args.dataset or config["dataset"]
    # Another dataset is read at the model's input size unless told otherwise.
    base = config["data_kwargs"] if args.dataset is None else {"size": trained.preprocessing.size}
    if name == "nifti" and trained.preprocessing.axcodes:  # new scans go to the training data's voxel orientation
        base = {**base, "axcodes": trained.preprocessing.axcodes}
    dataset = data.load(name, split=args.split, **{**base, **args.data_kwargs})
    if dataset.class_names != trained_classes:
        raise ValueError(f"{args.checkpoint} was trained on {len(trained_classes)} classes {list(trained_classes)}, "
                         f"but {name!r} has {dataset.num_classes} {list(dataset.class_names)}; evaluate needs the same "
                         f"classes in the same order")
    if dataset.in_channels != trained.preprocessing.in_channels:
        raise ValueError(f"{args.checkpoint} takes {trained.preprocessing.in_channels} input channels, but {name!r} "
                         f"has {dataset.in_channels}")
    for field in ("intensity", "orientation", "aspect"):
        theirs, ours = getattr(dataset.preprocessing, field), getattr(trained.preprocessing, field)
        if theirs != ours:
            # A model sees only what its training data looked like: another scaling can cost most of its Dice.
            hint = f' (pass "{field}" in --data-kwargs to match)' if name == "nifti" else ""
            print(f"note: {name!r} is read with {field} {theirs}, the training data with {ours}{hint}")
    results = evaluate(trained.model, dataset, method=args.method, tta=args.tta)
    print(per_class(results).round(4).to_string())
    print(f"mean Dice ({name}, {args.split}, {results.attrs['resolution']} resolution): {mean_dice(results):.4f}, "
          f"mean HD95: {mean_hd95(results):.2f} voxels, {mean_hd95(results, unit='mm'):.2f} mm\n{CONVENTION}")
    if args.save:
        save_csv(results, args.save)
        print(f"wrote {args.save}")
    return 0


def _predict(args) -> int:
    from .pipeline.inference import predict_files

    written = predict_files(args.checkpoint, args.input, args.output, tta=args.tta, overwrite=args.overwrite,
                            progress=not args.quiet, device=args.device)
    print(f"wrote {len(written)} label map(s) to {args.output}")
    return 0


def _reproduce(args) -> int:
    from .studies.executors import EXECUTOR_ENV, OPTIONS_ENV, options_for, resolve
    from .models.weights import WEIGHTS_ENV
    from .teaching.reproduce import reproduce

    if args.weights:  # the notebooks' kernels inherit it
        os.environ[WEIGHTS_ENV] = str(Path(args.weights).expanduser().resolve())
    if args.executor:  # so do the notebooks' sweeps
        os.environ[EXECUTOR_ENV] = args.executor
    if args.executor_option:
        os.environ[OPTIONS_ENV] = " ".join([os.environ.get(OPTIONS_ENV, ""), *args.executor_option]).strip()
    options_for(resolve(None), {})  # a misspelt option stops here, not in the first chapter that trains

    return reproduce(args.profile, notebooks_dir=args.notebooks, output_root=args.output_root, only=args.only,
                     cell_timeout=args.cell_timeout)


def _check(args) -> int:
    from .data.nifti_folder import folder_summary, inspect_folder

    problems, notes = inspect_folder(args.path)
    print("\n".join(notes + (problems or [folder_summary(args.path)])))
    return 1 if problems else 0


def _colab_links(args) -> int:
    from .teaching.colab import links_command

    return links_command(args)


def _nnunet(args) -> int:
    # nnunetv2 is an optional extra: a missing or unsupported one is one line, not a traceback.
    try:
        if args.action == "export":
            from .integrations.nnunet_raw import export

            folder = export(args.dataset, args.out, dataset_id=args.id, size=args.size, overwrite=args.overwrite,
                            **args.data_kwargs)
            print(f"wrote {folder} (nnU-Net raw format; after nnUNetv2_plan_and_preprocess, "
                  f"`python -m lomix_core nnunet use-kit-split {folder}` makes fold 0 the kit's train/val split)")
            return 0
        if args.action == "use-kit-split":
            from .integrations.nnunet_raw import use_kit_split

            raw = Path(args.raw_folder)
            preprocessed = Path(args.preprocessed or os.environ.get("nnUNet_preprocessed", "")) / raw.name
            print(f"wrote {use_kit_split(raw, preprocessed)}")
            return 0
        from .integrations import nnunet_shim

        if args.action == "install-trainers":
            shim, changed = nnunet_shim.install_trainers()
            print(f"{'installed' if changed else 'already installed'}: {shim}")
        else:
            removed = nnunet_shim.uninstall_trainers()
            print(f"removed {', '.join(map(str, removed))}" if removed else "nothing to remove: the shim is not installed")
        return 0
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m lomix_core", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one model with one supervision preset")
    _add_config_options(p)
    p.add_argument("--pretrained", action="store_true",
                   help="ImageNet weights for a timm encoder (needs internet or the Hugging Face cache)")
    p.add_argument("--weights", default=None, metavar="PATH", help="encoder weights from a local timm state_dict")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run folder's last.pt if there is one (same settings required); "
                        "a finished run is scored again, not retrained")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score a saved checkpoint on a split, at each scan's own resolution")
    p.add_argument("checkpoint", help="a best.pt written by train")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--dataset", default=None, choices=data.available(),
                   help="score on another dataset with the same classes (default: the one it was trained on)")
    p.add_argument("--data-kwargs", type=_json_object, default={},
                   help='JSON for the dataset, e.g. \'{"root": "data/other_scans"}\' (the size defaults to the model\'s)')
    p.add_argument("--method", default="logits", choices=list(NATIVE_METHODS),
                   help="back to the scan's grid: resample the logits, then argmax (default), or argmax, then "
                        "enlarge: nearest (torch's pixel-centred nearest neighbour) or zoom (scipy's order-0 zoom, "
                        "pixel for pixel the official code's and TransUNet's)")
    p.add_argument("--tta", action="store_true", help="average the prediction over left-right and up-down flips")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--save", default=None, metavar="CSV", help="write the tidy per-volume, per-class results here")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="write label maps for new scans (NIfTI) or images with a trained model")
    p.add_argument("checkpoint", help="a best.pt written by train")
    p.add_argument("input", help="a NIfTI file, a folder of NIfTI files (<case>_0000.nii.gz ... for several channels), "
                                 "or a folder of 2-D images")
    p.add_argument("output", help="folder for <case>.nii.gz (or .png) label maps and <case>.json sidecars")
    p.add_argument("--tta", action="store_true", help="average the prediction over left-right and up-down flips")
    p.add_argument("--overwrite", action="store_true",
                   help="predict every case again (default: skip cases already predicted with this checkpoint)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_predict)

    p = sub.add_parser("reproduce", help="run the notebook series with papermill and write REPORT.md")
    p.add_argument("--profile", default="auto", choices=list(profiles.PROFILES))
    p.add_argument("--notebooks", default=None, help="folder of NN_name.ipynb notebooks (default: the kit's own)")
    p.add_argument("--output-root", default=os.environ.get(chapter.OUTPUT_ENV) or "outputs",
                   help="results go to OUTPUT_ROOT/<profile>/ (default: $LOMIX_OUTPUT_DIR, else outputs)")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="ImageNet weights of the colab and full profiles' pvt_v2_b2 encoder: a timm state_dict file, "
                        "or a folder holding pvt_v2_b2.safetensors (sets $LOMIX_WEIGHTS; default: the Hugging Face "
                        "cache, or a download)")
    p.add_argument("--only", nargs="+", default=None, help="run only these notebooks (stem or number prefix)")
    p.add_argument("--executor", default=None, choices=["local", "submitit", "ray"],
                   help="where the notebooks' runs train (sets $LOMIX_EXECUTOR): this machine (default), SLURM "
                        "through submitit, or a Ray cluster ($RAY_ADDRESS); install the engines with "
                        "pip install -e \".[cluster]\"")
    p.add_argument("--executor-option", action="append", default=None, metavar="KEY=VALUE",
                   help="an option of the executor, repeatable (added to $LOMIX_EXECUTOR_OPTIONS): submitit takes "
                        "partition, gpus, timeout_min, mem_gb, threads, folder and submitit's slurm_* parameters "
                        "(e.g. slurm_account=abc); ray takes address, gpus, threads")
    p.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                   help="report a cell still running after this long as failed (default: the profile's; "
                        "smoke 600, cpu 3600, colab and full none)")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("check", help="list every problem in a NIfTI dataset folder (bring your own data)")
    p.add_argument("path", help="folder with dataset.json, imagesTr/, labelsTr/ (and imagesTs/, labelsTs/)")
    p.set_defaults(func=_check)

    p = sub.add_parser("colab-links", help="point every Colab badge and install line at OWNER/REPO (a fork on GitHub)")
    p.add_argument("repository", metavar="OWNER/REPO")
    p.add_argument("--checkout", default=str(Path(__file__).resolve().parents[1]),
                   help="the kit's checkout whose pyproject.toml, README, docs and notebooks are rewritten (default: this one)")
    p.set_defaults(func=_colab_links)

    p = sub.add_parser("nnunet", help="LoMix in nnU-Net v2: install its trainers, export a kit dataset (docs/integrations.md)")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("install-trainers", help="put the kit's trainer shim into nnunetv2 (safe to rerun)")
    actions.add_parser("uninstall-trainers", help="remove the shim (and its compiled copies) from nnunetv2")
    q = actions.add_parser("export", help="write a kit dataset as an nnU-Net raw dataset OUT/DatasetXXX_NAME")
    q.add_argument("dataset", choices=data.available())
    q.add_argument("out", help="the folder that holds nnU-Net raw datasets (usually $nnUNet_raw)")
    q.add_argument("--id", type=int, default=901, help="nnU-Net's three-digit dataset id (default 901)")
    q.add_argument("--size", type=int, default=None, help="side of the kit's model grid (default: the dataset's)")
    q.add_argument("--data-kwargs", type=_json_object, default={}, help="JSON for the kit's loader, e.g. '{\"root\": \"data/x\"}'")
    q.add_argument("--overwrite", action="store_true", help="replace an existing export")
    q = actions.add_parser("use-kit-split", help="make fold 0 of a planned dataset the kit's train/val split")
    q.add_argument("raw_folder", help="the exported $nnUNet_raw/DatasetXXX_NAME")
    q.add_argument("--preprocessed", default=None, help="nnU-Net's preprocessed root (default: $nnUNet_preprocessed)")
    p.set_defaults(func=_nnunet)
    return top


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One ``--option`` per TrainConfig field that has one, from the field's own description
    (:func:`lomix_core.pipeline.config.setting`): its default, type, choices and help."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.metadata["cli"] is None:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        options = dict(default=default, help=f.metadata["help"])
        if f.metadata["choices"] is not None:
            options["choices"] = list(f.metadata["choices"]())
        kind = hints[f.name]
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif dict in (kind, typing.get_origin(kind)):
            options["type"] = _json_object
        else:  # int | None -> int; str | list[float] | None -> str (a name); list[str] | None -> str, with nargs
            members = [kind, *typing.get_args(kind)]
            scalars = [t for t in members if t in (int, float, str)]
            options["type"] = scalars[0] if scalars else typing.get_args(next(
                t for t in members if typing.get_origin(t) is list))[0]
        p.add_argument(f"--{f.name.replace('_', '-')}", **{**options, **f.metadata["cli"]})


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
