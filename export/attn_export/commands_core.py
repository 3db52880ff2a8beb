"""Work behind the core CLI commands, with rich tables and progress bars for people."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .artifact import MANIFEST_NAME
from .errors import ArtifactError, ModelLoadError, UsageError
from .sources import DataSource

__all__ = [
    "model_config_from_options",
    "train_and_save",
    "export_model",
    "build_main",
    "render_export",
    "render_parity",
    "render_manifest",
]

logger = logging.getLogger(__name__)


def model_config_from_options(**fields: Any) -> dict[str, Any]:
    return fields


def _default_run_dir(data: DataSource) -> Path:
    return Path("runs") / ("movielens" if data.kind == "movielens" else "synthetic")


def train_and_save(
    data_path: Path | None,
    out: Path | None,
    model_fields: dict[str, Any],
    train_fields: dict[str, Any],
    console: Console | None,
) -> dict[str, Any]:
    """Train on the data source, save a checkpoint with its metrics, and return a summary."""
    from attn_models import RankerConfig, save_checkpoint
    from attn_models.train import TrainConfig, train_ranker

    data = DataSource.from_option(data_path)
    dataset = data.load()
    try:
        ranker_config = RankerConfig(vocab_size=dataset.vocab_size, **model_fields)
        train_config = TrainConfig(**train_fields)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    logger.info("Training on %s: %d users, %d items", data.kind, dataset.num_users, dataset.num_items)

    if console is None:
        result = train_ranker(dataset, ranker_config, train_config)
    else:
        with _progress(console) as bar:
            task = bar.add_task(f"train on {data.kind}", total=None)

            def report(step: int, total: int, loss: float) -> None:
                bar.update(task, completed=step, total=total, description=f"train on {data.kind} (loss {loss:.3f})")

            result = train_ranker(dataset, ranker_config, train_config, progress=report)
    ev = result.evaluation
    summary = {
        "data": data.to_dict(),
        "users": dataset.num_users,
        "items": dataset.num_items,
        "epochs": train_config.epochs,
        "best_epoch": result.best_epoch,
        "test_requests": ev.num_requests,
        "candidates_per_request": ev.num_candidates,
        "model_auc": ev.model_auc,
        "model_gauc": ev.model_gauc,
        "popularity_auc": ev.popularity_auc,
        "popularity_gauc": ev.popularity_gauc,
    }
    out = out or _default_run_dir(data) / "checkpoint.pt"
    save_checkpoint(out, result.model, extra={"training": summary, "train_config": dict(train_fields)})
    summary["checkpoint"] = str(out)
    if console is not None:
        render_training(console, summary)
    return summary


def render_training(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title=f"Held-out test split ({summary['test_requests']} users, 1 positive + "
                        f"{summary['candidates_per_request'] - 1} sampled negatives each)")
    table.add_column("ranker")
    table.add_column("AUC", justify="right")
    table.add_column("GAUC", justify="right")
    table.add_row("target attention", f"{summary['model_auc']:.4f}", f"{summary['model_gauc']:.4f}")
    table.add_row("popularity", f"{summary['popularity_auc']:.4f}", f"{summary['popularity_gauc']:.4f}")
    console.print(table)
    console.print(f"checkpoint: {summary['checkpoint']}")


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def export_model(
    out: Path,
    checkpoint: Path | None,
    factory: str | None,
    data_path: Path | None,
    opset: int,
    max_requests: int,
    force: bool,
    quiet: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Export a checkpoint or a factory model into an artifact and return its summary."""
    from attn_models import load_checkpoint

    from .pipeline import export_artifact, export_ranker

    if (checkpoint is None) == (factory is None):
        raise UsageError("Give exactly one of --checkpoint PATH or --factory package.module:factory.")
    steps = (lambda message: None) if quiet else _step_printer(console or Console(stderr=True))
    if checkpoint is not None:
        try:
            model = load_checkpoint(checkpoint)
        except Exception as exc:  # torch.load raises UnpicklingError, EOFError, RuntimeError, ...
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, pickle.UnpicklingError):
                # torch's own text suggests weights_only=False, which would run arbitrary code.
                first_line = f"not a checkpoint that torch.load(weights_only=True) can read ({type(exc).__name__})"
            raise ModelLoadError(
                f"Cannot load checkpoint {checkpoint}: {first_line}. Pass a file written by "
                "`attn-export train` or attn_models.save_checkpoint."
            ) from exc
        data = DataSource.from_option(data_path)
        dataset = data.load()
        if dataset.vocab_size > model.config.vocab_size:
            raise UsageError(f"--data {data_path} has more items than the checkpoint's vocab_size "
                             f"({model.config.vocab_size}); pass the data the model was trained on.")
        result = export_ranker(model, out, data, force=force, progress=steps, opset=opset,
                               max_requests=max_requests, dataset=dataset)
    else:
        from .sources import load_factory

        model, spec = load_factory(factory)
        result = export_artifact(model, spec, out, {"kind": "factory", "factory": factory}, opset=opset,
                                 force=force, progress=steps)
    return _export_summary(result)


def _step_printer(console: Console):
    def step(message: str) -> None:
        console.print(f"[cyan]>[/] {message}", highlight=False)

    return step


def _export_summary(result) -> dict[str, Any]:
    report = result.report
    return {
        "artifact": str(result.path),
        "opset": result.manifest["opset"],
        "files": result.manifest["files"],
        "parity": report.to_dict(),
    }


def render_export(console: Console, summary: dict[str, Any]) -> None:
    console.print(f"artifact: [bold]{summary['artifact']}[/] (opset {summary['opset']})")
    _parity_tables(console, summary["parity"])


def render_parity(console: Console, report) -> None:
    _parity_tables(console, report.to_dict())


def _parity_tables(console: Console, parity: dict[str, Any]) -> None:
    outputs = Table(title=f"Parity: {parity['variant']} ONNX vs PyTorch")
    for column in ("case", "output", "shape", "max abs diff", "max rel diff", "atol", "result"):
        outputs.add_column(column, justify="right" if "diff" in column or column == "atol" else "left")
    for record in parity["outputs"]:
        outputs.add_row(record["case"], record["name"], "x".join(map(str, record["candidate_shape"])),
                        f"{record['max_abs_diff']:.2e}", f"{record['max_rel_diff']:.2e}", f"{record['atol']:g}",
                        _verdict(record["passed"]))
    console.print(outputs)

    rankings = Table(title="Ranking parity (top-10; near-ties |diff| < 1e-5 reported, not counted)")
    for column in ("case", "requests", "top-10 overlap", "Kendall tau", "flips", "near-ties", "AUC ref", "AUC diff", "result"):
        rankings.add_column(column, justify="left" if column == "case" else "right")
    for record in parity["rankings"]:
        rankings.add_row(
            record["case"], str(record["requests"]), f"{record['mean_top_k_overlap']:.4f}",
            f"{record['mean_kendall_tau']:.4f}", str(record["flipped_pairs"]), str(record["near_tie_pairs"]),
            "-" if record["reference_auc"] is None else f"{record['reference_auc']:.4f}",
            "-" if record["auc_drop"] is None else f"{record['auc_drop']:+.1e}",
            _verdict(record["top_k_identical"]),
        )
    console.print(rankings)

    if parity["properties"]:
        props = Table(title="Properties of the exported graph")
        for column in ("property", "max abs diff", "atol", "result"):
            props.add_column(column)
        for record in parity["properties"]:
            props.add_row(record["name"], f"{record['max_abs_diff']:.2e}", f"{record['atol']:g}", _verdict(record["passed"]))
        console.print(props)
    verdict = "[bold green]PASS[/]" if parity["passed"] else "[bold red]FAIL[/]"
    console.print(f"parity {verdict}: max abs diff {parity['max_abs_diff']:.2e}")


def render_gate(console: Console, gate: dict[str, Any]) -> None:
    metrics, thresholds = gate["metrics"], gate["thresholds"]
    table = Table(title=f"Accuracy gate: {gate['variant']} vs fp32 ONNX on {metrics['requests']} held-out requests")
    for column in ("metric", "value", "threshold"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    table.add_row("AUC drop", _fmt(metrics["auc_drop"], "+.5f"), f"<= {thresholds.get('max_auc_drop')}")
    table.add_row("mean top-10 overlap", _fmt(metrics["mean_top_k_overlap"], ".4f"), f">= {thresholds.get('min_top_k_overlap')}")
    table.add_row("mean Kendall tau", _fmt(metrics["mean_kendall_tau"], ".4f"), f">= {thresholds.get('min_kendall_tau')}")
    table.add_row("near-tie pairs (reported, not counted)", str(metrics["near_tie_pairs"]), "")
    contract = [f for f in gate["failures"] if f.startswith("contract property")]
    table.add_row("scoring contract (padding, padded-slot ids, batch rows)",
                  "broken" if contract else "kept", "kept")
    console.print(table)
    verdict = "[bold green]PASS[/]" if gate["passed"] else "[bold red]FAIL[/]: " + "; ".join(gate["failures"])
    console.print(f"gate {verdict}")


def _verdict(passed: bool) -> str:
    return "[green]pass[/]" if passed else "[red]FAIL[/]"


def render_manifest(console: Console, artifact: Path, manifest: dict[str, Any]) -> None:
    info = Table(title=f"Artifact {artifact}", show_header=False)
    info.add_column("field")
    info.add_column("value")
    info.add_row("model", str(manifest["model"]["kind"]))
    info.add_row("opset", str(manifest["opset"]))
    info.add_row("vocab_size", str(manifest.get("vocab_size")))
    info.add_row("max_seq_len", str(manifest.get("max_seq_len")))
    info.add_row("padding id", str(manifest.get("padding_id")))
    info.add_row("dynamic axes", ", ".join(manifest["dynamic_axes"]))
    info.add_row("default variant", str(manifest.get("default_variant")))
    info.add_row("created", manifest.get("created_utc", ""))
    for package, version in manifest["producer"].items():
        info.add_row(f"version {package}", version)
    console.print(info)

    io = Table(title="Inputs and outputs")
    for column in ("kind", "name", "dtype", "shape"):
        io.add_column(column)
    for kind in ("inputs", "outputs"):
        for tensor in manifest[kind]:
            io.add_row(kind[:-1], tensor["name"], tensor["dtype"], escape("[" + ", ".join(map(str, tensor["shape"])) + "]"))
    console.print(io)

    variants = Table(title="Variants")
    for column in ("variant", "file", "size (KiB)", "gate", "max abs diff", "description"):
        variants.add_column(column)
    for name, variant in manifest["variants"].items():
        size = sum(manifest["files"].get(f, {}).get("bytes", 0) for f in variant["files"] if f.endswith((".onnx", ".data")))
        gate = variant.get("gate", {})
        diff = gate.get("max_abs_diff")
        verdict = _verdict(variant["passed"])
        if not variant["passed"] and gate.get("failures"):
            verdict += ": " + escape("; ".join(gate["failures"]))
        variants.add_row(name, variant["model_file"], f"{size / 1024:.1f}", verdict,
                         "-" if diff is None else f"{diff:.2e}", variant.get("description", ""))
    console.print(variants)


def build_main(
    data_path: Path | None,
    out: Path | None,
    epochs: int,
    retrain: bool,
    threads: int,
    console: Console | None,
    optimize: bool = True,
    quantize: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Train or reuse the default ranker, export it with parity, add the faster variants, summarize."""
    from attn_models import read_checkpoint

    data = DataSource.from_option(data_path)
    run_dir = _default_run_dir(data)
    checkpoint = run_dir / "checkpoint.pt"
    out = out or Path("artifacts") / ("movielens" if data.kind == "movielens" else "default")
    if out.exists() and not force and not (out / MANIFEST_NAME).is_file():
        raise ArtifactError(
            f"{out} exists and is not an attn-export artifact (no {MANIFEST_NAME}); choose another --out, "
            "or pass --force to replace it."
        )
    train_fields = dict(epochs=epochs, threads=threads)

    training = None
    if checkpoint.is_file() and not retrain:
        extra = read_checkpoint(checkpoint).get("extra", {})
        if extra.get("training", {}).get("data") == data.to_dict() and extra.get("train_config") == train_fields:
            training = extra["training"]
            training["checkpoint"] = str(checkpoint)
            if console is not None:
                console.print(f"Reusing {checkpoint} (trained on {data.kind}; pass --retrain to train again)")
                render_training(console, training)
    if training is None:
        training = train_and_save(data_path, checkpoint, {}, train_fields, console)

    summary = export_model(out, checkpoint, None, data_path, opset=18, max_requests=256, force=True,
                           quiet=console is None, console=console)
    if console is not None:
        render_export(console, summary)
    result: dict[str, Any] = {"training": training, "export": summary}
    if optimize:
        result["optimize"] = _optimize_step(out, console)
    if quantize:
        result["quantize"] = _quantize_step(out, console)
    from .artifact import read_manifest

    result["default_variant"] = read_manifest(out).get("default_variant")
    if console is not None:
        render_build_summary(console, result)
    return result


def _optimize_step(artifact: Path, console: Console | None) -> dict[str, Any]:
    from .errors import OptimizeError
    from .optimize import optimize_artifact

    if console is not None:
        console.print("[cyan]>[/] optimize the fp32 graph")
    outcome = optimize_artifact(artifact, max_requests=256)
    if not outcome.passed:
        raise OptimizeError("The optimized variant failed parity: " + "; ".join(outcome.failures))
    return {"passed": outcome.passed, "max_abs_diff_vs_pytorch": outcome.against_pytorch.max_abs_diff,
            "default_variant": outcome.default_variant}


def _quantize_step(artifact: Path, console: Console | None) -> dict[str, Any]:
    from .quantize import QuantizeOptions, quantize_artifact

    if console is None:
        summary = quantize_artifact(artifact, QuantizeOptions(auto=True))
    else:
        with console.status("quantize and gate each scheme") as status:
            summary = quantize_artifact(artifact, QuantizeOptions(auto=True), progress=lambda step: status.update(step))
    if console is None:
        return summary.to_dict()
    table = Table(title="Quantized variants (gate: AUC drop <= 0.002, top-10 overlap >= 0.95, Kendall tau >= 0.95)")
    for column in ("variant", "size (MB)", "size vs fp32", "p50 (ms)", "AUC drop", "top-10 overlap", "tau", "gate"):
        table.add_column(column, justify="left" if column in ("variant", "gate") else "right")
    table.add_row("fp32", f"{summary.fp32_size_bytes / 1e6:.2f}", "1.00", _fmt(summary.fp32_p50_ms, ".3f"), "", "", "", "reference")
    for variant in summary.variants:
        metrics = variant.gate.to_dict()["metrics"] if variant.gate else {}
        table.add_row(variant.name, _fmt(variant.size_bytes and variant.size_bytes / 1e6, ".2f"),
                      _fmt(variant.size_ratio, ".2f"), _fmt(variant.p50_ms, ".3f"),
                      _fmt(metrics.get("auc_drop"), "+.5f"), _fmt(metrics.get("mean_top_k_overlap"), ".4f"),
                      _fmt(metrics.get("mean_kendall_tau"), ".4f"),
                      _gate_cell(variant))
    console.print(table)
    return summary.to_dict()


def _gate_cell(variant) -> str:
    if variant.gate is None:
        return f"[red]error[/]: {escape(str(variant.error))}"
    if variant.passed:
        return _verdict(True)
    return "[red]FAIL[/]: " + escape("; ".join(variant.gate.failures))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render_build_summary(console: Console, result: dict[str, Any]) -> None:
    training, export = result["training"], result["export"]
    table = Table(title="attn-export build: summary")
    table.add_column("step")
    table.add_column("result")
    table.add_row("data", f"{training['data']['kind']} ({training['users']} users, {training['items']} items)")
    table.add_row("held-out AUC / GAUC", f"{training['model_auc']:.4f} / {training['model_gauc']:.4f}")
    table.add_row("popularity AUC / GAUC", f"{training['popularity_auc']:.4f} / {training['popularity_gauc']:.4f}")
    table.add_row("artifact", export["artifact"])
    table.add_row("fp32 parity", ("PASS" if export["parity"]["passed"] else "FAIL")
                  + f" (max abs diff {export['parity']['max_abs_diff']:.2e})")
    if "optimize" in result:
        optimized = result["optimize"]
        table.add_row("optimized parity", f"PASS (max abs diff {optimized['max_abs_diff_vs_pytorch']:.2e})")
    if "quantize" in result:
        passed = [v["name"] for v in result["quantize"]["variants"] if v["passed"]]
        table.add_row("quantized variants passing the gate", ", ".join(passed) or "none")
    table.add_row("default variant (served by attn_runtime)", str(result["default_variant"]))
    console.print(table)
