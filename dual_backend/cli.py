"""``dual-backend``: list the lessons, run one on either backend (or both), print a model summary.

    dual-backend list
    dual-backend run fashion_mlp --backend both
    dual-backend run fashion_mlp --variant width_512 --backend torch --profile quick --seed 0
    dual-backend summary fashion_cnn --backend keras
    dual-backend bench fashion_mlp --epochs 3 --json bench.json
    dual-backend exec my_model.py --backend both        # your own Keras script, on each backend
    dual-backend parity --model my_model.pt              # your own saved model, on both backends

``--backend both`` runs each backend in its own process, one after the
other, so the two frameworks never share a process, then prints the results
side by side.
"""

from __future__ import annotations

import argparse
import ast
import json
import signal
import subprocess
import sys
from pathlib import Path

from dual_backend import BACKENDS, DEVICES, data, lessons
from dual_backend.errors import DualBackendError
from dual_backend.environments import environment_for, runs_elsewhere
from dual_backend.formats import FILE_FORMATS
from dual_backend.interrupts import sigterm_as_keyboard_interrupt
from dual_backend.model import MIXED_PRECISIONS, SpeedUps, steady_seconds
from dual_backend.run import PROFILES, RunSettings


def _lesson_listing() -> str:
    lines = []
    for lesson in lessons.LESSONS.values():
        options = ", ".join(f"{name}={value!r}" for name, value in lesson.options.items()) or "none"
        lines.append(f"{lesson.name}: {lesson.title} ({lesson.notes})")
        trains = (f"{lesson.params:,} params; {lesson.epochs} epochs" if lesson.kind == "train"
                  else "no model to train: one image, filtered and pooled")
        lines.append(f"  {trains}; options: {options}")
        lines.append("  variants: default - as the course writes it")
        for name, variant in lesson.variants.items():
            lines.append(f"            {name} - {variant.description}")
    return "\n".join(lines)


def _parse_option(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def add_speedup_flags(command: argparse.ArgumentParser) -> None:
    """Speed-ups that change the numbers computed: off unless asked for (see SpeedUps)."""
    command.add_argument("--precision", choices=MIXED_PRECISIONS, default="float32",
                         help="bf16: bfloat16 autocast (torch) / mixed_bfloat16 policy (keras)")
    command.add_argument("--compile", action="store_true", help="torch.compile (torch) / XLA jit_compile (keras)")
    command.add_argument("--channels-last", action="store_true",
                         help="torch: convolutions in channels-last memory (faster on CPUs)")


def speedups(args) -> SpeedUps:
    return SpeedUps(precision=args.precision, compile=args.compile, channels_last=args.channels_last)


def run_settings(args, backend: str) -> RunSettings:
    """``dual-backend run``'s arguments as the settings of one backend's run."""
    return RunSettings(args.lesson, backend, variant=args.variant, epochs=args.epochs, profile=args.profile,
                       seed=args.seed, device=args.device, options=dict(args.option), init_from=args.init_from,
                       same_order=args.same_order, devices=args.devices, strategy=args.strategy,
                       speedups=speedups(args), floatx="float64" if args.float64 else None)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dual-backend", description=__doc__.split("\n\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="{list,run,predict,parity,compare,bench,exec,convert,summary}")
    commands.add_parser("list", help="the lessons, their variants and options")

    def lesson_command(name: str, help: str, lesson_required: bool = True) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help)
        command.add_argument("lesson", choices=list(lessons.LESSONS), metavar="LESSON",
                             nargs=None if lesson_required else "?", help=f"one of: {', '.join(lessons.LESSONS)}")
        command.add_argument("--variant", default=None, help="an exercise variant (dual-backend list)")
        command.add_argument("--option", action="append", default=[], type=_parse_option, metavar="NAME=VALUE",
                             help="a model option of the lesson, e.g. hidden_units=512 (repeatable)")
        command.add_argument("--device", choices=DEVICES, default="auto")
        return command

    run = lesson_command("run", "train a lesson and report its test metrics")
    run.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    run.add_argument("--epochs", type=int, default=None, help="override the lesson's (or profile's) epochs")
    run.add_argument("--profile", choices=PROFILES, default="full",
                     help="full: the course's recipe; quick: the short CI profile")
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--init-from", choices=list(BACKENDS), default=None,
                     help="start from the initial weights of this backend's model (same seed): same start")
    run.add_argument("--same-order", action="store_true",
                     help="both backends take the batches in one permutation drawn from the seed")
    run.add_argument("--devices", type=int, default=1,
                     help="train data-parallel on N devices (CPU processes or GPUs); batch size stays global")
    run.add_argument("--strategy", choices=["auto", "ddp", "mirrored"], default="auto",
                     help="ddp: Lightning DDP (torch); mirrored: tf.distribute.MirroredStrategy (keras)")
    add_speedup_flags(run)
    run.add_argument("--float64", action="store_true",
                     help="build, train and evaluate in float64 (with --init-from and --same-order: "
                          "the same run on both backends, without float32's rounding)")
    run.add_argument("--data-dir", default=None, help="folder holding fashion-mnist/, mnist/, ...")
    run.add_argument("--out", default=None, help="write <backend>/history.json and metrics.json here "
                                                 "(default: runs/<lesson>-<variant>)")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run from its backup, OUT/<backend>/backup/ (same settings)")
    predict = commands.add_parser("predict", help="classify image files with a trained horse_or_human model")
    predict.add_argument("lesson", choices=["horse_or_human"], metavar="LESSON", help="horse_or_human")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--backend", choices=list(BACKENDS), required=True)
    predict.add_argument("--checkpoint", required=True, help="the model `run` saved: " + " or ".join(
        f"OUT/{backend}/model{formats.model}" for backend, formats in FILE_FORMATS.items()))
    predict.add_argument("--device", choices=DEVICES, default="auto")
    convert = commands.add_parser(
        "convert", help="move a trained model between the frameworks: IN.keras/IN.h5 → OUT.pt or OUT.ckpt, "
                        "IN.pt/IN.ckpt → OUT.keras")
    convert.add_argument("source", metavar="IN", help="a .keras or .h5 file (tf.keras), a .pt file (torch backend), "
                                                      "or a .ckpt file convert wrote")
    convert.add_argument("target", metavar="OUT", help="the file to write: .pt, or .ckpt (a Lightning checkpoint a "
                                                       "Trainer resumes from), for a Keras file; .keras for the others")
    convert.add_argument("--check", type=int, default=0, metavar="N",
                         help="run both models, each on its own framework, on N inputs and compare their outputs "
                              "(exit code 1 above the tolerance)")
    convert.add_argument("--data-dir", default=None, help="folder holding fashion-mnist/, mnist/, ...")
    compare = commands.add_parser("compare", help="run lessons on both backends, several seeds, and report")
    compare.add_argument("lesson", choices=["all", *lessons.LESSONS], metavar="LESSON|all")
    compare.add_argument("--variant", default=None)
    compare.add_argument("--all-variants", action="store_true")
    compare.add_argument("--seeds", type=int, default=1)
    compare.add_argument("--profile", choices=PROFILES, default="quick")
    compare.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    compare.add_argument("--device", choices=DEVICES, default="auto")
    compare.add_argument("--same-start", action="store_true", help="torch starts from the keras model's weights")
    compare.add_argument("--same-order", action="store_true", help="both backends take one batch order")
    compare.add_argument("--data-dir", default=None)
    compare.add_argument("--out", default="runs/compare", help="runs and report.md / report.html go here")
    parity = lesson_command("parity", "prove both backends hold the same model: transfer weights, compare",
                            lesson_required=False)
    parity.add_argument("--model", default=None, metavar="FILE",
                        help="instead of a LESSON: a model of your own (dual_backend.keras) that model.save wrote, "
                             "built on both backends from the file's weights")
    parity.add_argument("--steps", type=int, default=0,
                        help="also N training steps with the same start and the same batch order")
    parity.add_argument("--optimizer", action="append", choices=["adam", "sgd", "rmsprop"], default=None,
                        help="the optimizers of the one-step check (default: the lesson's own; repeatable)")
    parity.add_argument("--seed", type=int, default=0)
    parity.add_argument("--float64", action="store_true", help="every check in float64 on both backends")
    parity.add_argument("--data-dir", default=None, help="folder holding fashion-mnist/, mnist/, ...")
    bench = commands.add_parser("bench", help="seconds per epoch: keras, torch, Keras-on-torch, a plain torch loop")
    bench.add_argument("lesson", choices=["all", *lessons.LESSONS], metavar="LESSON|all")
    bench.add_argument("--variant", default=None)
    bench.add_argument("--device", choices=DEVICES, default="cpu")
    bench.add_argument("--epochs", type=int, default=3, help="epochs per run: the first is reported apart")
    bench.add_argument("--repeats", type=int, default=1, help="runs per system, in alternating order")
    bench.add_argument("--no-turns", dest="turns", action="store_false",
                       help="run the systems one after another instead of side by side, taking turns epoch by epoch")
    bench.add_argument("--systems", nargs="+", default=None, metavar="SYSTEM",
                       help="some of: keras torch keras-on-torch plain-torch (default: all four)")
    bench.add_argument("--profile", choices=PROFILES, default="full")
    bench.add_argument("--seed", type=int, default=0)
    add_speedup_flags(bench)
    bench.add_argument("--json", default=None, metavar="FILE", help="also write every measurement as JSON")
    bench.add_argument("--markdown", default=None, metavar="FILE", help="also write the tables as markdown")
    bench.add_argument("--data-dir", default=None)
    exec_ = commands.add_parser("exec", help="run your own Keras script (from dual_backend import keras) on a "
                                             "backend or both, and compare its fit and evaluate results",
                                description="Runs SCRIPT.py once per backend, each in a process of its own started "
                                            "in this folder with DUAL_BACKEND set, records every fit's History and "
                                            "evaluate's result in DIR/<backend>/calls.json, and with both prints "
                                            "them side by side. Files the script writes (model.save(...)) are "
                                            "written by each run in turn: with both, the torch run's replace the "
                                            "keras run's; put keras.config.backend() in their names to keep both.",
                                usage="dual-backend exec SCRIPT.py [--backend {keras,torch,both}] [--out DIR] "
                                      "[-- SCRIPT ARGUMENTS...]")
    exec_.add_argument("script", metavar="SCRIPT.py")
    exec_.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    exec_.add_argument("--out", default=None, help="write <backend>/calls.json here (default: runs/<script name>)")
    summary = lesson_command("summary", "print the Keras-style model summary")
    summary.add_argument("--backend", choices=list(BACKENDS), default="keras")
    return top


def _check_names(args, top: argparse.ArgumentParser) -> None:
    """Unknown variants and options get the valid ones listed, and exit code 2, like argparse's own errors."""
    if getattr(args, "float64", False) and getattr(args, "precision", "float32") != "float32":
        top.error("--float64 and --precision bf16 ask for two different precisions: choose one")
    try:
        recipe = lessons.recipe(args.lesson, args.variant)
        recipe.model_options(dict(args.option))
    except DualBackendError as error:
        top.error(str(error))
    if getattr(args, "same_order", False) and recipe.reads_image_folders:
        from dual_backend.run import same_order_refused

        top.error(same_order_refused(args.lesson))


def _print_side_by_side(results: list[dict]) -> None:
    first = results[0]
    if lessons.get(first["lesson"]).kind == "convolution":
        from dual_backend import convolution

        return convolution.print_side_by_side(results)
    recipe = lessons.recipe(first["lesson"], first["variant"])
    keys = list(first["test"])
    judged = lessons.judged_label(first)
    low, high = first["expected"]
    print(f"\n{first['lesson']} ({first['variant']}), {first['profile']} profile, "
          f"expected {judged} in [{low:g}, {high:g}]")
    widths = {k: max(14, len(f"test {k}") + 2) for k in keys}  # a column at least 2 wider than its name
    judged_width = max(14, len(judged) + 2)
    header = f"{'backend':<8}{'device':<8}{'epochs':>7}{'s/epoch':>9}" + "".join(
        f"{'test ' + k:>{widths[k]}}" for k in keys)
    if first["judged_on"] == "training":
        header += f"{judged:>{judged_width}}"
    print(header + "  verdict")
    for result in results:
        steady = steady_seconds(result["seconds_per_epoch"])
        row = f"{result['backend']:<8}{result['device']:<8}{result['epochs_run']:>7}{steady:>9.2f}"
        row += "".join(f"{result['test'][k]:>{widths[k]}.4f}" for k in keys)
        if first["judged_on"] == "training":
            row += f"{lessons.judged_value(result):>{judged_width}.4f}"
        print(row + ("  inside" if result["inside_expected"] else "  OUTSIDE"))
    if len(results) == 2:
        difference = abs(lessons.judged_value(results[0]) - lessons.judged_value(results[1]))
        verdict = "within" if difference <= recipe.tolerance else "OUTSIDE"
        print(f"difference in {judged}: {difference:.4f} ({verdict} the tolerance {recipe.tolerance:g})")


def _run(args) -> int:
    from dual_backend.run import run

    out = Path(args.out or f"runs/{args.lesson}-{args.variant or 'default'}")
    if args.backend != "both" and runs_elsewhere(args.backend):
        # The backend's own environment (DUAL_BACKEND_KERAS_PYTHON / _TORCH_PYTHON; docs/gpu.md).
        return _run_child(run_settings(args, args.backend).command(out, args.resume), environment_for(args.backend))
    if args.backend != "both":
        metrics = run(run_settings(args, args.backend), out=out, resume=args.resume)
        if "rank" in metrics:  # a DDP helper process: rank 0 prints
            return 0
        if lessons.get(args.lesson).kind == "convolution":
            from dual_backend import convolution

            convolution.print_result(metrics)
            return 0
        judged = lessons.judged_label(metrics)
        print(f"{args.backend}: test " + " - ".join(f"{k}: {v:.4f}" for k, v in metrics["test"].items())
              + f"; {judged} {lessons.judged_value(metrics):.4f} expected in "
              + f"[{metrics['expected'][0]:g}, {metrics['expected'][1]:g}]: "
              + ("inside" if metrics["inside_expected"] else "OUTSIDE"))
        return 0
    results = []
    for backend in BACKENDS:
        print(f"== {backend} backend", flush=True)
        code = _run_child(run_settings(args, backend).command(out, args.resume), environment_for(backend))
        if code != 0:
            return code if code in (130, 143) else 1
        results.append(json.loads((out / backend / "metrics.json").read_text()))
    _print_side_by_side(results)
    return 0


def _run_child(command: list[str], environment: dict) -> int:
    """One backend's run in its own process, left to finish its own interrupt handling.

    Ctrl-C reaches the child from the terminal as well; SIGTERM, sent to this
    process alone, is passed on.  Either way the child writes its message and
    keeps its backup, and its exit code is returned."""
    child = subprocess.Popen(command, env=environment)
    try:
        return child.wait()
    except KeyboardInterrupt as interrupt:
        if getattr(interrupt, "signal_name", "SIGINT") == "SIGTERM":
            child.send_signal(signal.SIGTERM)
        return child.wait()


def _compare(args, top) -> int:
    from dual_backend import compare

    try:
        if args.data_dir:
            data.set_data_dir(args.data_dir)
        compare.selection(args.lesson, args.variant, args.all_variants)
    except DualBackendError as error:
        top.error(str(error))
    sections = compare.compare(args.lesson, args.variant, args.all_variants, seeds=args.seeds,
                               profile=args.profile, device=args.device, out=args.out, epochs=args.epochs,
                               same_start=args.same_start, same_order=args.same_order)
    outside = [f"{s.lesson}/{s.variant}" for s in sections if not compare.verdicts(s)["inside"]]
    print(f"report: {Path(args.out) / 'report.md'} and {Path(args.out) / 'report.html'}")
    if outside:
        print("outside the spec: " + ", ".join(outside))
    return 0


def _bench(args, top) -> int:
    from dual_backend import bench

    systems = args.systems or list(bench.SYSTEMS)
    unknown = [s for s in systems if s not in bench.SYSTEMS]
    if unknown:
        top.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(bench.SYSTEMS)}")
    if args.epochs < 1 or args.repeats < 1:
        top.error("--epochs and --repeats must be at least 1")
    try:
        if args.data_dir:
            data.set_data_dir(args.data_dir)
        if args.variant:
            lessons.recipe(args.lesson, args.variant)
    except DualBackendError as error:
        top.error(str(error))
    chosen = list(lessons.LESSONS) if args.lesson == "all" else [args.lesson]
    results, tables = [], []
    for lesson in chosen:
        result = bench.bench(lesson, args.variant if args.lesson != "all" else None, systems=systems,
                             epochs=args.epochs, device=args.device, repeats=args.repeats, profile=args.profile,
                             seed=args.seed, speedups=speedups(args), turns=args.turns,
                             say=lambda line: print(line, file=sys.stderr, flush=True))
        results.append(result)
        tables.append(bench.markdown(result))
        print(tables[-1] + "\n", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results if args.lesson == "all" else results[0], indent=2))
    if args.markdown:
        Path(args.markdown).write_text("\n\n".join(tables) + "\n")
    return 0


def _check_parity_arguments(args, top: argparse.ArgumentParser) -> None:
    """A LESSON or ``--model FILE``, not both; the lesson's own settings are not taken with a file."""
    if (args.lesson is None) == (args.model is None):
        top.error("parity takes a LESSON or --model FILE (a model of your own that model.save wrote): give one")
    given = [flag for flag, value in (("--variant", args.variant), ("--option", args.option),
                                      ("--steps", args.steps)) if value]
    if args.model is not None and given:
        top.error(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for lessons: "
                  "--model FILE takes --optimizer, --seed, --float64 and --data-dir")


def _parity(args) -> int:
    """One line per check with its measured maximum difference; exit 1 when one exceeds its tolerance."""
    from dual_backend import parity
    from dual_backend.precision import using

    precision = "float64" if args.float64 else "float32"
    with using(precision, BACKENDS):
        if args.model is None:
            found = parity.checks(args.lesson, args.variant, steps=args.steps, seed=args.seed,
                                  optimizers=args.optimizer)
            title = f"{args.lesson} ({args.variant or 'default'})"
        else:
            found, inputs = parity.model_file_checks(args.model, optimizers=args.optimizer, seed=args.seed)
            title = f"{args.model} ({inputs})"
    print(f"parity of {title}, keras and torch on the CPU, {precision}")
    for check in found:
        print(check.line())
    failed = [check for check in found if not check.passed]
    print(f"{len(found) - len(failed)} of {len(found)} checks within tolerance" + (", SOME FAILED" if failed else ""))
    return 1 if failed else 0


def _predict(args) -> int:
    """The course's last cell: ``<file> is a human`` when the sigmoid output > 0.5, else a horse."""
    import dual_backend
    from dual_backend import keras_file
    from dual_backend.images import load_images

    try:
        expected = FILE_FORMATS[args.backend].model
        if not args.checkpoint.endswith(expected) and not keras_file.is_keras_file(args.checkpoint):
            raise DualBackendError(f"--backend {args.backend} reads {expected} models (and Keras' .keras and .h5 "
                                   f"files); got {args.checkpoint}. Train one with "
                                   f"`dual-backend run {args.lesson} --backend {args.backend}`, or convert one "
                                   "with `dual-backend convert`.")
        if not Path(args.checkpoint).is_file():
            raise DualBackendError(f"No model at {args.checkpoint}. Train one with "
                                   f"`dual-backend run {args.lesson} --backend {args.backend}`.")
        model = dual_backend.load_model(args.checkpoint, device=args.device, backend=args.backend)
        if model.lesson != args.lesson:
            raise DualBackendError(f"{args.checkpoint} holds a {model.lesson!r} model, not {args.lesson!r}.")
        classes = model.predict(load_images(args.images, model.input_shape[1:3]), batch_size=10, verbose=0)
    except DualBackendError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path, output in zip(args.images, classes[:, 0]):
        print(f"{output:.6f}")
        print(f"{Path(path).name} is a {'human' if output > 0.5 else 'horse'}")
    return 0


def _convert(args) -> int:
    from dual_backend import convert

    try:
        if args.data_dir:
            data.set_data_dir(args.data_dir)
        if args.check < 0:
            raise DualBackendError(f"--check takes a number of inputs, 0 or more; got {args.check}.")
        print(convert.convert(args.source, args.target))
        if args.check:
            checked = convert.check(args.source, args.target, args.check)
            print(checked.line())
            return 0 if checked.passed else 1
    except DualBackendError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _interrupted(interrupt: KeyboardInterrupt) -> int:
    """What was kept and how to go on; exit code 128 + the signal's number, as a shell reports it
    (SIGTERM anywhere in a command arrives as a KeyboardInterrupt too, saying so)."""
    code = 143 if getattr(interrupt, "signal_name", "SIGINT") == "SIGTERM" else 130
    if not getattr(interrupt, "epochs", 0):  # not in training: nothing to continue
        print(f"\nInterrupted ({getattr(interrupt, 'cause', 'Ctrl-C')}).", file=sys.stderr)
        return code
    message = f"Interrupted ({interrupt.cause}) in epoch {interrupt.epoch} of {interrupt.epochs}. "
    if interrupt.backup_path:
        kept = interrupt.epochs_kept
        message += (f"{interrupt.backup_path} holds the first {kept} epoch{'s' if kept > 1 else ''}: "
                    "run the same command with --resume to continue from there.")
    else:
        message += "No epoch had finished, so nothing was kept."
    print(f"\n{message}", file=sys.stderr)
    return code


def main(argv=None) -> int:
    top = parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    script_args = []  # exec: what follows "--" is the script's own
    if argv[:1] == ["exec"] and "--" in argv:
        argv, script_args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = top.parse_args(argv)
    args.script_args = script_args
    if args.command == "list":
        print(_lesson_listing())
        return 0
    if args.command == "predict":
        return _predict(args)
    if args.command == "compare":
        return _compare(args, top)
    if args.command == "bench":
        return _bench(args, top)
    if args.command == "exec":
        return _exec(args, top)
    if args.command == "convert":
        return _convert(args)
    if args.command == "parity":
        _check_parity_arguments(args, top)
    if getattr(args, "model", None) is None:
        _check_names(args, top)
    try:
        with sigterm_as_keyboard_interrupt():
            return _lesson_command(args)
    except DualBackendError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        return _interrupted(interrupt)


def _exec(args, top) -> int:
    from dual_backend import script

    if not Path(args.script).is_file():
        top.error(f"{args.script} is not a file: give the path of a Python script")
    out = Path(args.out or f"runs/{Path(args.script).stem}")
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    for backend in backends:
        if len(backends) > 1:
            print(f"== {backend} backend", flush=True)
        code = script.run_on(backend, args.script, args.script_args, out)
        if code != 0:
            print(f"error: {args.script} failed on the {backend} backend (exit code {code}); its calls so far are "
                  f"in {out / backend / 'calls.json'}", file=sys.stderr)
            return code
    if len(backends) > 1:
        calls = [json.loads((out / backend / "calls.json").read_text()) for backend in backends]
        print(f"\n{args.script} on both backends (calls recorded in {out}/<backend>/calls.json)")
        print(script.side_by_side(*calls))
    return 0


def _lesson_command(args) -> int:
    if getattr(args, "data_dir", None):
        data.set_data_dir(args.data_dir)
    if args.command == "parity":
        return _parity(args)
    if args.command == "summary":
        import dual_backend

        dual_backend.build(args.lesson, backend=args.backend, variant=args.variant, device=args.device,
                           **dict(args.option)).summary()
        return 0
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
