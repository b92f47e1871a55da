"""``dual-backend bench``: one lesson's training speed on four systems, each in a process of its own.

The systems:

- ``keras``: the keras backend (``keras_ref/``, tf.keras on TensorFlow), as ``dual-backend run`` trains it;
- ``torch``: the torch backend (``torch_impl/``, Lightning), as ``dual-backend run`` trains it;
- ``keras-on-torch``: Keras 3 on its torch backend (``KERAS_BACKEND=torch``) running
  ``keras_ref``'s very model-building code: the peer a user could pick instead of a port;
- ``plain-torch``: a plain PyTorch loop over ``torch_impl``'s model, optimizer and loss,
  without Lightning: the floor the torch backend is measured against.

Each system trains the lesson's data (profile ``full`` unless told) for
``epochs`` epochs in a fresh process.  The processes take turns, one epoch
at a time (``turns``, the default for lessons that train): all of them start
and load their data, then each waits at every epoch's start for its turn, so
only one trains at any moment and the systems' epochs interleave, the order
reversing every round.  A shared machine whose speed drifts within minutes
(docs/speed.md) then slows all systems alike, which whole runs one after
another cannot promise.  Without turns, each run is a process after the last; with
``repeats`` > 1 the order of the systems alternates (forwards, backwards, ...).  The first epoch (start-up, tracing, caches)
is reported apart; "steady" is ``dual_backend.model.steady_seconds``, the median of the later epochs.  Ratios are
the keras backend's steady seconds over the system's: above 1 is faster than
tf.keras.  Timings are meant to be compared within one run of this command.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import subprocess
import sys
import time
import types

import numpy as np

from dual_backend import lessons
from dual_backend.environments import python_for
from dual_backend.model import SpeedUps, batches_in, steady_seconds

SYSTEMS = {
    "keras": "the keras backend: keras_ref/ on tf.keras",
    "torch": "the torch backend: torch_impl/ on Lightning",
    "keras-on-torch": "Keras 3 with KERAS_BACKEND=torch running keras_ref/'s model",
    "plain-torch": "a plain PyTorch loop of torch_impl/'s model (no Lightning): the floor",
}
RESULT_MARK = "BENCH-RESULT "
TURNS_VARIABLE = "DUAL_BACKEND_BENCH_TURNS"  # "READ_FD,WRITE_FD": the pipes of the turn-taking


class Turns:
    """A worker's side of the turn-taking: say "waiting" and block until the coordinator says "go".

    The worker waits at the start of every epoch and once more when training
    ends (its evaluation is a turn too).  ``wait`` does nothing outside turns."""

    def __init__(self, read_fd: int | None = None, write_fd: int | None = None):
        self.read_fd, self.write_fd = read_fd, write_fd

    @classmethod
    def from_environment(cls) -> "Turns":
        value = os.environ.get(TURNS_VARIABLE)
        return cls(*map(int, value.split(","))) if value else cls()

    def wait(self) -> None:
        if self.read_fd is None:
            return
        os.write(self.write_fd, b"w")
        if not os.read(self.read_fd, 1):
            raise SystemExit("bench: the coordinator is gone")


class TurnTimer:
    """The hooks of bench's epoch timers, mixed into a callback class of either kind: wait for the
    turn at each epoch's start, time the epoch from there, and wait once more when training ends."""

    def __init__(self, turns: Turns):
        super().__init__()
        self.turns, self.seconds, self.cpu_seconds = turns, [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.turns.wait()
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)
        self.cpu_seconds.append(time.process_time() - self.cpu_start)

    def on_train_end(self, logs=None):
        self.turns.wait()


def turn_taking_callback(turns: Turns):
    """A front-end callback timing each epoch, taking turns (the two backends' runs)."""
    from dual_backend.callbacks import Callback

    class TakeTurns(TurnTimer, Callback):
        every_batch = False

    return TakeTurns(turns)


# --------------------------------------------------------------------------- one system, in its own process


def measure(system: str, lesson: str, variant: str | None, epochs: int, device: str, profile: str,
            seed: int, speedups: SpeedUps = SpeedUps()) -> dict:
    """Train ``lesson`` on ``system`` in this process; seconds per epoch, samples, accuracy, memory.

    ``speedups`` apply to the two backends and the plain loop (Keras-on-torch runs as it comes)."""
    recipe = lessons.recipe(lesson, variant)
    if recipe.lesson.kind == "convolution":
        return _measure_convolution(system, recipe, device)
    if system in ("keras", "torch"):
        return _measure_backend(system, recipe, epochs, device, profile, seed, speedups)
    if system == "keras-on-torch":
        return _measure_keras_on_torch(recipe, epochs, device, profile, seed)
    if system == "plain-torch":
        return _measure_plain_torch(recipe, epochs, device, profile, seed, speedups)
    raise ValueError(f"unknown system {system!r}")


def _result(engine: str, seconds: list[float], cpu_seconds: list[float], samples: int, metric: str | None,
            value: float | None, device: str) -> dict:
    from dual_backend.run import peak_memory_mb

    memory = peak_memory_mb("keras" if engine == "keras" else "torch", device)
    return {"seconds_per_epoch": seconds, "cpu_seconds_per_epoch": cpu_seconds, "samples_per_epoch": samples,
            "metric": metric, "value": value, "device": device, "peak_memory_mb": memory["resident"],
            "peak_gpu_memory_mb": memory.get("gpu")}


def _measure_backend(backend, recipe, epochs, device, profile, seed, speedups) -> dict:
    from dual_backend.run import run_lesson

    timer = turn_taking_callback(Turns.from_environment())
    metrics = run_lesson(recipe.lesson.name, backend, variant=recipe.variant_name, epochs=epochs,
                         profile=profile, seed=seed, device=device, verbose=0, speedups=speedups,
                         callbacks=[timer])
    samples = _samples_per_epoch(recipe, profile)
    return _result(backend, timer.seconds, timer.cpu_seconds, samples, metrics["judged_by"],
                   lessons.judged_value(metrics), metrics["device"])


def _samples_per_epoch(recipe, profile) -> int:
    steps = recipe.steps_per_epoch(profile)
    if recipe.reads_image_folders:
        # Both pipelines repeat: passes of full batches and a short last one (1,027 pictures:
        # 8 x 128 + 3), read on across epochs, so an epoch of 8 steps averages 8 x 1,027 / 9.
        from dual_backend import data
        from dual_backend.images import check_image_folder

        images = sum(check_image_folder(data.horse_or_human_dirs()[0], 2).values())
        return round(steps * images / batches_in(images, recipe.lesson.batch_size))
    from dual_backend.run import prepare_data

    count = len(prepare_data(recipe, profile).x_train)
    return min(count, steps * recipe.lesson.batch_size) if steps else count


def _keras_on_torch_program(lesson: str):
    """``keras_ref/<lesson>.py`` importing Keras 3 on its torch backend as its ``tf.keras``.

    TensorFlow itself stays out of the process (as for a user who installed
    Keras and torch only): its name is bound to nothing once the lesson file holds
    its ``tf``, so Keras' optional TensorFlow paths see it as not installed."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    sys.modules["tensorflow"] = types.SimpleNamespace(keras=keras)
    try:
        program = importlib.import_module(f"keras_ref.{lesson}")
    finally:
        sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError
    return keras, program


def _measure_keras_on_torch(recipe, epochs, device, profile, seed) -> dict:
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if recipe.reads_image_folders:
        return {"skipped": "keras_ref's image pipeline is tf.data (image_dataset_from_directory), "
                           "which needs TensorFlow in the process"}
    keras, program = _keras_on_torch_program(recipe.lesson.name)
    from dual_backend.run import prepare_data

    keras.utils.set_random_seed(seed)
    model = program.build_model(input_shape=recipe.lesson.input_shape, **recipe.model_options({}))
    prepared = prepare_data(recipe, profile)
    timer = keras_epoch_timer(keras, Turns.from_environment())
    model.fit(prepared.x_train, prepared.y_train, epochs=epochs, batch_size=recipe.lesson.batch_size,
              validation_data=prepared.validation_data, steps_per_epoch=recipe.steps_per_epoch(profile),
              callbacks=[timer], verbose=0)
    metric, value = _keras_score(recipe, model, prepared)
    import torch

    return _result("keras-on-torch", timer.seconds, timer.cpu_seconds, _samples_per_epoch(recipe, profile), metric,
                   value, "gpu" if torch.cuda.is_available() else "cpu")


def keras_epoch_timer(keras, turns: Turns = Turns()):
    """A Keras callback timing each epoch, taking turns (Keras is imported by the caller)."""

    class EpochTimer(TurnTimer, keras.callbacks.Callback):
        pass

    return EpochTimer(turns)


def _keras_score(recipe, model, prepared):
    metric = recipe.lesson.metric
    if metric is None:  # hello_world: the prediction for x = 10
        return "prediction", float(np.asarray(model.predict(prepared.x_test, verbose=0))[0][0])
    results = model.evaluate(prepared.x_test, prepared.y_test, verbose=0, return_dict=True)
    return metric, float(results[metric])


def _measure_plain_torch(recipe, epochs, device, profile, seed, speedups) -> dict:
    """The same model, optimizer and loss as the torch backend, trained by a loop written out
    (``torch_impl/plain_loop.py``): a permutation per epoch, slices of device tensors,
    zero_grad / backward / step."""
    from torch_impl import process

    process.before_framework_starts()  # as the front end does before the torch backend starts
    import torch

    from torch_impl import plain_loop

    torch.manual_seed(seed)
    torch_device = torch.device("cuda" if device == "gpu" and torch.cuda.is_available() else "cpu")
    module = plain_loop.build(recipe.lesson.name, recipe.lesson.input_shape, torch_device, **recipe.model_options({}))
    module.use_channels_last(speedups.channels_last)
    if speedups.compile:
        module.compile_steps()
    autocast = torch.autocast(torch_device.type, dtype=torch.bfloat16, enabled=speedups.precision == "bf16")
    optimizer = module.configure_optimizers()
    # The torch backend's thread rule: one intra-op thread for Dense-only models on the CPU.
    threads = 1 if torch_device.type == "cpu" and not module.channels_first else None
    steps = recipe.steps_per_epoch(profile)

    # The torch backend's process settings: its float environment, freed memory kept, its thread rule.
    with process.denormals_flushed(), process.freed_memory_kept(), process.intra_op_threads(threads):
        if recipe.reads_image_folders:
            from dual_backend.data import horse_or_human_dirs

            train_dir, _ = horse_or_human_dirs()
            program = importlib.import_module(f"torch_impl.{recipe.lesson.name}")
            # A repeated pipeline, read on across epochs as fit reads it (torch_impl.batches.Repeat).
            stream = iter(program.training_data(train_dir, batch_size=recipe.lesson.batch_size, seed=seed))

            def batches():
                for _ in range(steps):
                    x, y = next(stream)
                    yield module.in_memory_format(x.to(torch_device)), y.to(torch_device)

            samples = _samples_per_epoch(recipe, profile)
        else:
            from dual_backend.run import prepare_data

            prepared = prepare_data(recipe, profile)
            batch = recipe.lesson.batch_size
            x_all, y_all = plain_loop.as_tensors(module, prepared.x_train, prepared.y_train, torch_device, batch)
            samples = min(len(x_all), steps * batch) if steps else len(x_all)

            def batches():
                return plain_loop.shuffled_batches(module, x_all, y_all, batch, samples)

        timer = TurnTimer(Turns.from_environment())  # the backends' epoch timer, called by hand
        for epoch in range(epochs):
            timer.on_epoch_begin(epoch)
            correct, seen = plain_loop.train_epoch(module, optimizer, batches(), autocast)
            timer.on_epoch_end(epoch)
        timer.on_train_end()
    metric = recipe.lesson.metric
    if metric is None:  # hello_world: the prediction for x = 10
        module.eval()
        with torch.no_grad():
            x_test, _ = plain_loop.as_tensors(module, prepared.x_test, prepared.y_test, torch_device, 1)
            metric, value = "prediction", float(module(x_test)[0, 0])
    elif recipe.lesson.judge_training:
        value = correct / seen  # the last epoch's
    else:
        value = plain_loop.accuracy(module, *plain_loop.as_tensors(module, prepared.x_test, prepared.y_test,
                                                                   torch_device, 1000))
    return _result("plain-torch", timer.seconds, timer.cpu_seconds, samples, metric, value,
                   torch_device.type.replace("cuda", "gpu"))


def _measure_convolution(system, recipe, device) -> dict:
    """The convolution lesson trains nothing: the seconds of filtering and pooling the ascent image."""
    if system not in ("keras", "torch"):
        return {"skipped": "the convolution lesson runs a fixed filter; only the two backends apply it"}
    from dual_backend import convolution

    metrics = convolution.run(recipe, system, out=None, options={}, device=device, verbose=0)
    return {"seconds_per_epoch": [metrics["seconds"]], "samples_per_epoch": 1, "metric": "equal to the loop",
            "value": float(metrics["equal_to_loop"]["filtered"] and metrics["equal_to_loop"]["pooled"]),
            "device": metrics["device"], "loop_seconds": metrics["loop_seconds"], "peak_memory_mb": None}


# --------------------------------------------------------------------------- the comparison


def _worker_command(system, lesson, variant, epochs, device, profile, seed, speedups) -> list[str]:
    backend = "keras" if system == "keras" else "torch"  # keras-on-torch and the plain loop need torch
    command = [python_for(backend), "-m", "dual_backend.bench", "--worker", system, lesson, "--epochs", str(epochs),
               "--device", device, "--profile", profile, "--seed", str(seed), *speedups.flags()]
    return command + (["--variant", variant] if variant else [])


def _worker_result(output: str, returncode: int) -> dict:
    for line in output.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = "\n".join(output.strip().splitlines()[-15:])
    return {"failed": f"exit code {returncode}", "log": tail}


def _run_worker(command: list[str]) -> dict:
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return _worker_result(done.stdout, done.returncode)


def _run_workers_in_turns(commands: dict[str, list[str]], say) -> dict[str, dict]:
    """Start every worker at once; then give the turns: one epoch (or the final evaluation) of one
    worker at a time, round after round, the order reversed every round, until all have finished."""
    import tempfile

    workers = {}
    for system, command in commands.items():
        to_worker, from_worker = os.pipe(), os.pipe()
        log = tempfile.TemporaryFile(mode="w+")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   pass_fds=(to_worker[0], from_worker[1]),
                                   env={**os.environ, TURNS_VARIABLE: f"{to_worker[0]},{from_worker[1]}"})
        os.close(to_worker[0])
        os.close(from_worker[1])
        workers[system] = types.SimpleNamespace(process=process, log=log, go=to_worker[1], said=from_worker[0])

    def waiting(worker) -> bool:  # False: the worker has finished (or failed) instead
        return os.read(worker.said, 1) == b"w"

    def turn(worker) -> bool:  # one epoch (or the final evaluation); False: the worker is done
        try:
            os.write(worker.go, b"g")
        except BrokenPipeError:  # it died while waiting
            return False
        return waiting(worker)

    active = [system for system in commands if waiting(workers[system])]  # all started, data loaded
    say(f"  {len(active)} worker(s) ready; taking turns")
    round_ = 0
    while active:
        for system in (list(active) if round_ % 2 == 0 else list(reversed(active))):
            if not turn(workers[system]):
                active.remove(system)
        round_ += 1
    results = {}
    for system, worker in workers.items():
        worker.process.wait()
        for fd in (worker.go, worker.said):
            os.close(fd)
        worker.log.seek(0)
        results[system] = _worker_result(worker.log.read(), worker.process.returncode)
        worker.log.close()
    return results


def bench(lesson: str, variant: str | None = None, systems=tuple(SYSTEMS), epochs: int = 3, device: str = "cpu",
          repeats: int = 1, profile: str = "full", seed: int = 0, speedups: SpeedUps = SpeedUps(), turns: bool = True,
          say=print) -> dict:
    """Every system ``repeats`` times; the per-system summary and every run.

    ``turns``: the systems' processes run side by side, taking turns epoch by
    epoch (see the module's docstring); otherwise one after another, the
    order alternating between repeats.  The convolution lesson trains
    nothing and always runs one process after another."""
    runs: dict[str, list[dict]] = {system: [] for system in systems}
    turns = turns and lessons.recipe(lesson, variant).lesson.kind != "convolution"
    for repeat in range(repeats):
        order = list(systems) if repeat % 2 == 0 else list(reversed(systems))
        commands = {system: _worker_command(system, lesson, variant, epochs, device, profile, seed, speedups)
                    for system in order}
        if turns:
            say(f"bench {lesson}: {', '.join(order)} taking turns (repeat {repeat + 1}/{repeats}) ...")
            for system, result in _run_workers_in_turns(commands, say).items():
                runs[system].append(result)
            continue
        for system in order:
            say(f"bench {lesson}: {system} (repeat {repeat + 1}/{repeats}) ...")
            runs[system].append(_run_worker(commands[system]))
    summary = add_ratios({system: summarise(results) for system, results in runs.items()})
    from dual_backend.run import hardware

    return {"lesson": lesson, "variant": lessons.recipe(lesson, variant).variant_name, "device": device,
            "epochs": epochs, "repeats": repeats, "turns": turns, "profile": profile, "seed": seed,
            "hardware": hardware(),
            "speedups": speedups.flags(),
            "systems": summary, "runs": runs}


def add_ratios(summary: dict) -> dict:
    """Each system's speed relative to keras: steady seconds, and steady seconds without idle epochs."""
    keras_steady = summary.get("keras", {}).get("steady_seconds")
    keras_busy = summary.get("keras", {}).get("steady_seconds_busy", keras_steady)
    for entry in summary.values():
        if keras_steady and entry.get("steady_seconds"):
            entry["speed_vs_keras"] = keras_steady / entry["steady_seconds"]
            entry["speed_vs_keras_busy"] = keras_busy / entry.get("steady_seconds_busy", entry["steady_seconds"])
    return summary


# An epoch counts as idle when, at the CPU use of the busiest later epoch, its CPU time would have
# taken this much less wall time: a wait (tf.data's iterator teardown, say), not slower compute.
IDLE_SECONDS, IDLE_SHARE = 2.0, 0.2


def idle_epochs(seconds: list[float], cpu_seconds: list[float] | None) -> dict[int, float]:
    """The later epochs (index ≥ 1) that spent a part of their wall time without CPU time, with the
    seconds idle: wall time minus CPU time at the busiest later epoch's CPU use."""
    if not cpu_seconds or len(seconds) < 3:
        return {}
    busiest = max(cpu / wall for wall, cpu in zip(seconds[1:], cpu_seconds[1:]) if wall > 0)
    waits = {epoch: wall - cpu / busiest for epoch, (wall, cpu) in enumerate(zip(seconds, cpu_seconds)) if epoch}
    return {epoch: waited for epoch, waited in waits.items() if waited > max(IDLE_SECONDS, IDLE_SHARE * seconds[epoch])}


def summarise(results: list[dict]) -> dict:
    done = [r for r in results if "seconds_per_epoch" in r]
    if not done:
        first = results[0] if results else {}
        return {"note": first.get("skipped") or f"failed: {first.get('failed')}\n{first.get('log', '')}"}
    firsts = [r["seconds_per_epoch"][0] for r in done]
    steady = steady_seconds(*(r["seconds_per_epoch"] for r in done))
    idle = [idle_epochs(r["seconds_per_epoch"], r.get("cpu_seconds_per_epoch")) for r in done]
    # Each run with its idle later epochs left out (the first stays: steady_seconds sets it apart).
    busy = [[s for epoch, s in enumerate(r["seconds_per_epoch"]) if epoch not in gaps] for r, gaps in zip(done, idle)]
    values = [r["value"] for r in done if r.get("value") is not None]
    memory = [r["peak_memory_mb"] for r in done if r.get("peak_memory_mb")]
    summary = {"first_epoch_seconds": statistics.mean(firsts), "steady_seconds": steady,
               "samples_per_second": done[0]["samples_per_epoch"] / steady, "metric": done[0]["metric"],
               "value": statistics.mean(values) if values else None,
               "peak_memory_mb": max(memory) if memory else None, "device": done[0]["device"]}
    if any(idle):
        summary["idle_epochs"] = [{"run": run, "epoch": epoch + 1, "idle_seconds": waited}
                                  for run, gaps in enumerate(idle) for epoch, waited in gaps.items()]
        if any(run[1:] for run in busy):
            summary["steady_seconds_busy"] = steady_seconds(*busy)
    return summary


def markdown(result: dict) -> str:
    """The table of one bench run."""
    numerics = " ".join(result.get("speedups") or []) or "default numerics"
    head = (f"**{result['lesson']}** ({result['variant']}), {result['device']}, {numerics}, {result['epochs']} "
            f"epochs x {result['repeats']} run(s) per system"
            f"{', taking turns epoch by epoch' if result.get('turns') else ', one process after another'}, "
            f"profile {result['profile']}")
    lines = [head, "", "| system | first epoch (s) | steady s/epoch | samples/s | peak MiB | result | vs keras |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for system, entry in result["systems"].items():
        if "steady_seconds" not in entry:
            lines.append(f"| {system} | – | – | – | – | {entry['note'].splitlines()[0]} | – |")
            continue
        value = "–" if entry["value"] is None else f"{entry['metric']} {entry['value']:.4f}"
        memory = "–" if entry["peak_memory_mb"] is None else f"{entry['peak_memory_mb']:,.0f}"
        ratio = entry.get("speed_vs_keras")
        lines.append(f"| {system} | {entry['first_epoch_seconds']:.2f} | {entry['steady_seconds']:.3f} | "
                     f"{entry['samples_per_second']:,.0f} | {memory} | {value} | "
                     f"{'–' if ratio is None else f'{ratio:.2f}x'} |")
    return "\n".join(lines + _idle_lines(result["systems"]))


def _idle_lines(systems: dict) -> list[str]:
    """A note under the table when some system's epochs waited without computing (see ``idle_epochs``)."""
    waiting = {system: entry for system, entry in systems.items() if entry.get("idle_epochs")}
    if not waiting:
        return []
    lines = [""]
    for system, entry in waiting.items():
        gaps = ", ".join(f"{gap['epoch']} ({gap['idle_seconds']:.1f} s)" for gap in entry["idle_epochs"])
        lines.append(f"Idle epochs of {system} (wall time without CPU time: the process waited, on a sleeping "
                     f"thread, a lock or the machine, rather than computed slower): {gaps}; its steady s/epoch "
                     f"without them: "
                     f"{entry.get('steady_seconds_busy', float('nan')):.3f}.")
    ratios = ", ".join(f"{system} {entry['speed_vs_keras_busy']:.2f}x" for system, entry in systems.items()
                       if entry.get("speed_vs_keras_busy"))
    if ratios:
        lines.append(f"vs keras, idle epochs left out: {ratios}.")
    return lines


def _worker_main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dual_backend.bench --worker")
    parser.add_argument("system", choices=list(SYSTEMS))
    parser.add_argument("lesson", choices=list(lessons.LESSONS))
    parser.add_argument("--variant", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    speedups = SpeedUps(precision=args.precision, compile=args.compile, channels_last=args.channels_last)
    result = measure(args.system, args.lesson, args.variant, args.epochs, args.device, args.profile, args.seed,
                     speedups)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["--worker"]:
        sys.exit("usage: python -m dual_backend.bench --worker SYSTEM LESSON [...]; see `dual-backend bench`")
    sys.exit(_worker_main(sys.argv[2:]))
