"""``python -m pipeline <stage> [options]``: the one entry point every Snakemake rule calls.

Each stage is a plain function ``run(*, <paths and names>, params)`` in its module; its
keyword-only arguments become the subcommand's options (``data_dir`` → ``--data-dir``), typed
from the annotations. ``params`` is the stage's config section plus the run seed, given either
as ``--params JSON`` (what the rules pass, so Snakemake reruns a stage when they change) or
read from ``--config FILE``; both are validated against the config schema.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import (
    load_config,
    parse_sections_params,
    parse_stage_params,
    sections_params,
    stage_params,
)
from pipeline.errors import PipelineError
from pipeline.progress import log_startup


@dataclass(frozen=True)
class Stage:
    """A subcommand: where its ``run`` function lives and which config section it reads."""

    target: str
    # config section holding the stage's parameters (None: it has none; a tuple: several,
    # passed as one object per section)
    section: str | tuple[str, ...] | None
    help: str

    def load(self) -> Callable[..., Any]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


STAGES: dict[str, Stage] = {
    "synthesize": Stage("pipeline.synthesize.stage:run", "synthesize",
                        "render one synthetic subject (photos, cameras and truth; or, with "
                        "synthesize.layout mvp_human, its MVP-Human-like stand-in)"),
    "standin-splits": Stage("pipeline.synthesize.standin:run_splits", None,
                            "the stand-in data set's split files (train, val, test)"),
    "check-synthetic": Stage("pipeline.synthesize.checks:run", "synthesize",
                             "check a synthetic subject's truth against its images"),
    "ingest": Stage("pipeline.ingest:run", "ingest",
                    "decode every photo of a subject and write its manifest"),
    "preprocess": Stage("pipeline.preprocess:run", ("detect", "mask", "keypoints"),
                        "a subject's image stages in one process: detect and crop, mask, "
                        "keypoints and overlay of every action"),
    "detect": Stage("pipeline.detect:run", "detect",
                    "find the person in every view of an action and crop them"),
    "mask": Stage("pipeline.mask:run", "mask", "segment and matte the person in every crop"),
    "keypoints": Stage("pipeline.keypoints:run", "keypoints",
                       "2D body keypoints (COCO-17, BODY_25) in every crop"),
    "overlay": Stage("pipeline.overlay:run", None,
                     "draw boxes, mask contours and keypoints over an action's crops"),
    "fit": Stage("pipeline.fit:run", "fit",
                 "fit the body model to every action and view of a subject"),
    "register": Stage("pipeline.register:run", "register",
                      "register the body model to a subject's canonical scan; the scan "
                      "unposed into the pipeline's frame"),
    "cache": Stage("pipeline.cache:run", "cache",
                   "write a subject's HDF5 training cache (views, body fit, SDF/PIFu targets)"),
    "train-normal": Stage("pipeline.train:run_normal", "train_normal",
                          "train the normal network on the caches' truth normal maps"),
    "train": Stage("pipeline.train:run", "train",
                   "train Pixel2ISDF on the caches (checkpoints, resume, torchrun DDP)"),
    "train-pifu": Stage("pipeline.train:run_pifu", "pifu.train",
                        "train PIFu or Temporal PIFu on the caches' posed frames"),
    "checkpoint-meta": Stage("pipeline.training.checkpoint:write_sidecars", None,
                             "write checkpoints' <file>.meta.json sidecars (the header the "
                             "Snakefile checks a given checkpoint by, without its weights)"),
    "reconstruct": Stage("pipeline.reconstruct:run", "reconstruct",
                         "a subject's canonical mesh from the trained Pixel2ISDF"),
    "assess": Stage("pipeline.assess:run", ("colour", "fit", "export", "report", "evaluate"),
                    "everything after a reconstruction in one process: evaluate and render "
                    "(with a truth), selfcheck, colour and the avatar export"),
    "evaluate": Stage("pipeline.evaluate:run", "evaluate",
                      "score a reconstruction and both body baselines against the truth"),
    "selfcheck": Stage("pipeline.selfcheck:run", None,
                       "a reconstruction against its own inputs: reposed, reprojected, health"),
    "colour": Stage("pipeline.colour:run", "colour",
                    "a reconstruction and its fitted body coloured from the photos, with "
                    "held-out-view and truth colour measures"),
    "export": Stage("pipeline.export:run", ("fit", "export"),
                    "a reconstruction as a skinned glTF avatar (.glb) on the fitted body's bones"),
    "export-dataset": Stage("pipeline.submission:run_dataset", "fit",
                            "a reconstruction and its fitted body as OBJ in the data set's "
                            "frame, pose and unit (data.frame)"),
    "evaluate-summary": Stage("pipeline.evaluate:summarize", "evaluate",
                              "gather the subjects' scores into metrics.csv and tables"),
    "reconstruct-pifu": Stage("pipeline.pifu:reconstruct", "pifu.reconstruct",
                              "posed meshes of a test subject from PIFu or Temporal PIFu"),
    "evaluate-pifu": Stage("pipeline.pifu:evaluate", "pifu.evaluate",
                           "Table 2 scores and posed Chamfer/P2S of a PIFu model"),
    "pifu-table": Stage("pipeline.pifu:table", None,
                        "PIFu beside Temporal PIFu beside the report's Table 2"),
    "oracle-fit": Stage("pipeline.ablation:oracle_fit", None,
                        "a fit file whose body is the synthetic truth's (oracle_body ablation)"),
    "ablation-table": Stage("pipeline.ablation:table", "ablation",
                            "the ablation table from every variant's evaluations"),
    "generalisation-table": Stage("pipeline.generalisation:table", "generalisation",
                                  "the generalisation benchmark's tables (seeds × test "
                                  "subjects against the fitted body)"),
    "learning-curve-table": Stage("pipeline.learning_curve:table", "learning_curve",
                                  "the learning curve's tables (training-set size × test "
                                  "sets against the fitted body)"),
    "views-table": Stage("pipeline.views_study:table", "views_study",
                         "Chamfer against the number of input views"),
    "render": Stage("pipeline.report:render", "report",
                    "render a reconstruction beside its truth, coloured by distance"),
    "render-clip": Stage("pipeline.report:clip", "report",
                         "draw a clip's posed reconstructions beside the truth, frame by frame"),
    "training-curves": Stage("pipeline.report:curves", "report",
                             "plot the training runs' losses and validation scores"),
}

_SCALARS = {str: str, int: int, float: float, Path: Path}


def _add_function_options(parser: argparse.ArgumentParser, func: Callable[..., Any]) -> None:
    hints = typing.get_type_hints(func)
    for name, param in inspect.signature(func).parameters.items():
        if name == "params":
            continue
        if param.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"{func.__qualname__}: argument {name!r} must be keyword-only")
        flag = "--" + name.replace("_", "-")
        hint = hints[name]
        optional = [a for a in typing.get_args(hint) if a is not type(None)]
        if type(None) in typing.get_args(hint) and len(optional) == 1:
            hint = optional[0]  # `X | None = None`: an optional option of type X
        required = param.default is inspect.Parameter.empty
        default = None if required else param.default
        if hint is bool:
            parser.add_argument(flag, action="store_true", default=bool(default))
        elif typing.get_origin(hint) in (list, Sequence):
            (item,) = typing.get_args(hint)
            parser.add_argument(flag, type=_SCALARS[item], nargs="+" if required else "*",
                                required=required,
                                default=default, metavar=name.upper())
        else:
            parser.add_argument(flag, type=_SCALARS[hint], required=required, default=default,
                                metavar=name.upper())


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; the chosen stage's options are added only for that stage."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of input errors too")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, spec in STAGES.items():
        stage_parser = sub.add_parser(name, help=spec.help, description=spec.help)
        if name == stage and spec.section is not None:
            source = stage_parser.add_mutually_exclusive_group(required=True)
            source.add_argument("--params", help="the stage parameters as JSON (used by the rules)")
            source.add_argument("--config", type=Path, help="a config YAML file to read them from")
        if name == stage:
            _add_function_options(stage_parser, spec.load())
    return parser


def _chosen_stage(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if a in STAGES), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage; return the process exit code (0 ok, 1 input error, 2 usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_chosen_stage(argv)).parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = STAGES[args.stage]
    func = spec.load()
    log_startup(f"the stage {args.stage!r} (its module imported)")
    kwargs = {k: v for k, v in vars(args).items()
              if k not in ("stage", "params", "config", "log_level", "traceback")}
    try:
        if spec.section is None:
            func(**kwargs)
        elif isinstance(spec.section, tuple):  # a stage reading several sections
            func(params=sections_params(load_config(args.config), spec.section)
                 if args.config is not None
                 else parse_sections_params(args.params, spec.section), **kwargs)
        elif args.config is not None:
            func(params=stage_params(load_config(args.config), spec.section), **kwargs)
        else:
            func(params=parse_stage_params(args.params, spec.section), **kwargs)
    except PipelineError as exc:
        if args.traceback:
            raise
        logging.getLogger("pipeline").error("%s", exc)
        return 1
    return 0
