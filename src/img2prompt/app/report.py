"""Terminal summaries of finished runs (rich tables on stdout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from img2prompt.progress import stderr

if TYPE_CHECKING:
    from img2prompt.app.captions import CaptionRun
    from img2prompt.data.images import ImageSearch
    from img2prompt.data.prepare import PrepareReport
    from img2prompt.describer import DescribeRun, Description
    from img2prompt.generate.run import GenerateReport
    from img2prompt.index.build import BuildReport
    from img2prompt.index.tune import (
        TuneResult,  # (importing data.prepare would load scikit-learn: ~0.8 s on every command)
    )
    from img2prompt.metadata import GenerationMetadata
    from img2prompt.train.loop import TrainReport

console = Console()


def print_prepare_report(report: PrepareReport, out: Path) -> None:
    table = Table(title="data prepare", show_header=True, header_style="bold")
    table.add_column("step")
    table.add_column("rows removed", justify="right")
    table.add_row("rows read", f"{report.rows_read:,}", style="dim")
    for step, removed in report.removed.items():
        table.add_row(step, f"{removed:,}")
    table.add_row("rows written", f"{report.rows:,}", style="bold green")
    console.print(table)
    folds = ", ".join(f"{n:,}" for n in report.fold_rows)
    console.print(
        f"{report.prompts:,} prompts in {report.groups:,} groups "
        f"(largest group: {report.largest_group:,} prompts); rows per fold: {folds}"
    )
    if report.pair_recall is not None:
        console.print(
            f"approximate near-duplicate search: pair recall {report.pair_recall:.4f} "
            "(measured against exact search on a sample)"
        )
    if report.near_duplicate_examples:
        console.print("[bold]near duplicates dropped[/] (cosine: dropped ← kept):")
        for dropped, kept, cosine in report.near_duplicate_examples[:5]:
            console.print(
                f"  {cosine:.3f}: [red]{escape(dropped)}[/]\n         ← [green]{escape(kept)}[/]",
                highlight=False,
            )
    if report.error_examples:
        console.print("[bold yellow]skipped rows[/]:")
        for line in report.error_examples[:10]:
            console.print(f"  {line}", highlight=False, markup=False)
    console.print(f"wrote {out / 'prompts.parquet'} and {out / 'manifest.json'}")


def print_train_report(report: TrainReport) -> None:
    """Per fold: best validation cosine and epoch; then where the model and the OOF file are."""
    if not report.is_global_zero:
        return
    out = console
    if report.stopped_early:
        out.print(f"Stopped as asked; continue with the same command and --resume ({report.out}).")
        return
    table = Table(title=f"Trained in {report.seconds:.0f} s", title_justify="left")
    for column in ("fold", "best val cosine", "best epoch", "model"):
        table.add_column(column)
    for fold in report.folds:
        cosine = "-" if fold.best_cosine is None else f"{fold.best_cosine:.4f}"
        name = "all data" if fold.fold is None else str(fold.fold)
        table.add_row(name, cosine, fold.best_epoch or "-", escape(str(fold.model_dir)))
    out.print(table)
    if report.oof_cosine is not None:
        out.print(f"Out-of-fold mean cosine: [bold]{report.oof_cosine:.4f}[/]")
    out.print(f"Model folder: {escape(str(report.out / 'model'))}")


def print_descriptions(
    descriptions: list[Description],
    truths: list[str] | None = None,
    cosines: list[float] | None = None,
    neighbors: bool = True,
) -> None:
    """`describe`'s table: image, where the prompt comes from, match, prompt (and the model's
    own beside an embedded one), nearest bank entries; the demo adds the true prompt and the
    cosine of the predicted embedding to the true one. Every cell is plain text (`Text`): a
    prompt read from a file is shown, never interpreted as markup."""
    table = Table(show_header=True, header_style="bold", show_lines=True)
    table.add_column("image", overflow="fold", max_width=24)
    embedded = any(d.source != "model" for d in descriptions)
    if embedded:
        table.add_column("from")
    if cosines is not None:
        table.add_column("cosine\nto truth", justify="right", style="bold")
    table.add_column("match", justify="right")
    table.add_column("prompt", overflow="fold", ratio=3)
    if embedded:
        table.add_column("model's prompt", overflow="fold", ratio=3, style="dim")
    if truths is not None:
        table.add_column("true prompt", overflow="fold", ratio=3, style="dim")
    if neighbors:
        table.add_column("nearest bank entries", overflow="fold", ratio=2, style="cyan")
    retrieval = any(d.nearest_prompts for d in descriptions)
    if retrieval:  # an index model: the real prompts it blends and CLIP's own prompt
        table.add_column("nearest prompts (CLIP) / CLIP interrogation", overflow="fold", ratio=3)
    captioned = any(d.caption_candidates for d in descriptions)
    if captioned:  # a captioner: its candidates, and the judge's verdict where there is one
        table.add_column("candidates / judge", overflow="fold", ratio=3)
    for i, d in enumerate(descriptions):
        row = [Text(Path(d.image).name)]
        if embedded:
            row.append(Text({"metadata": "file", "model": "model"}.get(d.source, "-")))
        if cosines is not None:
            row.append(Text(f"{cosines[i]:.3f}"))
        row += [Text("-" if d.match is None else f"{d.match:.3f}"), Text(d.prompt or "")]
        if embedded:
            row.append(Text(d.model_prompt or "" if d.source == "metadata" else ""))
        if truths is not None:
            row.append(Text(truths[i]))
        if neighbors:
            row.append(Text("\n".join(f"{c:.2f} {t}" for t, c in d.neighbors)))
        if retrieval:
            lines = [f"{c:.3f} {t}" for t, c in d.nearest_prompts]
            if d.interrogation:
                lines.append(f"interrogation ({d.interrogation_match:.3f}): {d.interrogation}")
            row.append(Text("\n".join(lines)))
        if captioned:
            row.append(_candidates_text(d))
        table.add_row(*row)
    console.print(table)


def _candidates_text(d: Description) -> Text:
    """A captioner's candidates (the judge's cosine, else the captioner's score, before each),
    then the judge's figures: its cosine, the candidates' spread, caption or bank and by how
    much."""
    lines = [
        f"{'judge ' if c is not None else 'score '}{c if c is not None else s:.3f} {t}"
        for t, s, c in d.caption_candidates
    ]
    if d.judge_choice is not None:
        lines.append(
            f"judge cosine {d.judge_cosine:.3f}, spread {d.judge_spread:.3f}; "
            f"{d.judge_choice} won by {d.judge_margin:.3f} (bank: {d.bank_prompt})"
        )
    return Text("\n".join(lines))


def print_metadata(results: list[GenerationMetadata]) -> None:
    """`metadata`'s table: file, generator, prompt, negative prompt, the common settings.
    Plain text cells: metadata is untrusted and never rendered as markup."""
    table = Table(show_header=True, header_style="bold", show_lines=True)
    table.add_column("image", overflow="fold", max_width=28)
    table.add_column("generator")
    table.add_column("prompt", overflow="fold", ratio=3)
    table.add_column("negative prompt", overflow="fold", ratio=2, style="dim")
    table.add_column("settings", overflow="fold", ratio=2, style="cyan")
    for r in results:
        name, negative = Text(Path(r.image).name), Text(r.negative_prompt or "")
        table.add_row(name, Text(r.generator or "-"), _prompt_cell(r), negative, _settings_text(r))
    console.print(table)


SHOWN_SETTINGS = ("model", "sampler", "scheduler", "steps", "cfg_scale", "denoise", "seed", "size")


def _settings_text(result: GenerationMetadata) -> Text:
    settings = result.settings
    return Text(", ".join(f"{k}: {settings[k]}" for k in SHOWN_SETTINGS if k in settings))


def _prompt_cell(result: GenerationMetadata) -> Text:
    """The base pass's prompt, then what a person needs beside it: why there is none, the
    literal texts of a prompt made at run time (never shown as the prompt), the later passes."""
    cell = Text(result.prompt) if result.prompt is not None else Text("(none)", style="dim")
    if result.prompt is None and result.note:
        cell.append(f"\n{result.note}", style="dim")
    if result.candidates:
        cell.append("\ncandidates (not the prompt): " + " | ".join(result.candidates), "yellow")
    for later in result.passes[1:]:
        cell.append(f"\n{later.role} pass: ", style="bold")
        cell.append(later.positive if later.positive is not None else "(no text)")
    if result.error:
        cell.append(f"\n{result.error}", style="yellow")
    return cell


def print_decode_matches(result, out: Path | None) -> None:
    """decode's stderr table: each input, its prompt's match, the prompt; then the means."""
    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("input", overflow="fold", max_width=40)
    table.add_column("match", justify="right")
    table.add_column("prompt", overflow="fold")
    for label, decoded in zip(result.inputs, result.decoded, strict=True):
        table.add_row(label, f"{decoded.match:.4f}", decoded.prompt)
    stderr.print(table)
    n = len(result.decoded)
    mean = sum(d.match for d in result.decoded) / n
    stderr.print(
        f"{n:,} prompts, mean match {mean:.4f} (cosine of each prompt's embedding to its target);"
        f" {result.seconds / n:.3f} s per prompt, {result.encodes / n:.0f} texts encoded per prompt"
        + (f"; wrote {out}" if out else ""),
        highlight=False,
    )


def print_evaluation(result, truth: Path) -> None:
    """evaluate's summary: rows left out, the mean cosine (stdout), per fold and source, the
    worst images."""
    if result.unmatched:
        shown, more = result.unmatched[:10], len(result.unmatched) - 10
        stderr.print(
            f"left out {len(result.unmatched)} of {len(result.unmatched) + len(result.cosines)} "
            f"rows with no truth in {truth} (--strict makes this an error): "
            f"{', '.join(shown)}{f' and {more} more' if more > 0 else ''}",
            highlight=False,
            markup=False,
        )
    print(f"mean cosine {result.mean:.4f} over {len(result.cosines):,} images")
    for title, groups in (("fold", result.per_fold), ("source", result.per_source)):
        if len(groups) > 1:
            table = Table(title=f"per {title}", box=None, header_style="bold")
            for column in (title, "images", "mean cosine"):
                table.add_column(column, justify="right" if column != title else "left")
            for key, (n, mean) in groups.items():
                table.add_row(key, f"{n:,}", f"{mean:.4f}")
            stderr.print(table)
    stderr.print("worst images:", style="bold")
    for image, cosine in result.worst():
        stderr.print(f"  {cosine:.4f}  {image}", highlight=False, markup=False)


def print_generate_report(report: GenerateReport) -> None:
    """Summary on stdout: what this process made, and the state of the whole run."""
    who = "" if report.world_size == 1 else f"rank {report.rank}/{report.world_size}: "
    rate = report.images_generated / report.seconds if report.seconds else 0.0
    where = f" on {report.device} ({report.precision})" if report.device else ""
    console.print(
        f"{who}{report.images_generated:,} images generated in {report.shards_written:,} shards"
        f"{where}, {report.seconds:,.1f} s ({rate:,.2f} images/s); "
        f"{report.shards_done_before:,} of {report.shards:,} shards were already done",
        highlight=False,
    )
    if report.index is None:
        if report.world_size == 1:
            console.print("the run is not complete: run the same command again to finish it")
        return
    console.print(
        f"{report.images:,} images of {report.prompts:,} prompts indexed in {report.index}",
        highlight=False,
    )
    if report.truncated_prompts:
        console.print(
            f"[yellow]{report.truncated_prompts:,} of {report.prompts:,} prompts are longer than "
            f"the text encoder's {report.token_window} tokens[/] (longest: "
            f"{report.max_prompt_tokens}): their images see only the first "
            f"{report.token_window}, while their targets embed the whole prompt "
            "(column `truncated`)",
            highlight=False,
        )


def print_tuning(result: TuneResult) -> None:
    table = Table(title="mean cosine (rows: k, columns: temperature)", box=None)
    table.add_column("k", justify="right")
    for temperature in result.temperature_grid:
        table.add_column(f"{temperature:g}", justify="right")
    for k, row in zip(result.k_grid, result.scores, strict=True):
        cells = [
            f"[bold]{x:.4f}[/]" if (k, t) == (result.k, result.temperature) else f"{x:.4f}"
            for x, t in zip(row, result.temperature_grid, strict=True)
        ]
        table.add_row(str(k), *cells)
    stderr.print(table)
    for failure in result.failures:
        stderr.print(f"  skipped {failure.image}: {failure.reason}", highlight=False, markup=False)
    stderr.print(
        f"best k={result.k}, temperature={result.temperature:g}: mean cosine {result.score:.4f} "
        f"on {result.images:,} images (left out: {result.exclusion}); "
        + (f"written to {result.index / 'model.json'}; " if result.written else "")
        + f"out-of-fold predictions in {result.oof}; {result.seconds:.1f} s",
        highlight=False,
    )


def index_build_summary(report: BuildReport) -> str:
    """The line `index build` prints."""
    from img2prompt.index.build import RECALL_QUERIES

    parts = [
        f"index {report.out}: {report.prompts:,} prompts ({report.rows_read:,} rows read), "
        f"{report.dim}-d CLIP text features, {report.search} search",
        f"embedded {report.embedded:,} at {report.texts_per_second:,.1f} texts/s "
        f"({report.precision}, {report.device})"
        + (f", {report.resumed:,} kept from an interrupted build" if report.resumed else ""),
    ]
    if report.recall is not None:
        parts.append(
            f"recall@{report.recall_k} vs exact search {report.recall:.4f} (on "
            f"{min(RECALL_QUERIES, report.prompts):,} sampled prompts' text features)"
        )
    if report.split:
        parts.append(report.split)
    if not report.wrote:
        return f"this rank: {parts[1]}; {report.split}; rank 0 writes {report.out}"
    return "; ".join(parts) + f"; {report.seconds:.1f} s"


def print_failures(failures) -> None:
    """The images a command could not read, each with its reason (paths printed verbatim)."""
    if failures:
        stderr.print(f"[bold red]{len(failures)} images could not be read:[/]")
    for failure in failures:
        stderr.print(f"  {failure.image}: {failure.reason}", highlight=False, markup=False)


def print_bank_report(report) -> None:
    categories = ", ".join(f"{name} {count:,}" for name, count in report.categories.items())
    stderr.print(
        f"bank {escape(str(report.path))}: {report.entries:,} entries ({escape(categories)}); "
        f"added {report.added:,} ({report.embedded:,} embedded, the rest with their vectors), "
        f"{report.duplicates:,} duplicates skipped",
        highlight=False,
    )


def print_predict_summary(predictor, result, written: list[Path]) -> None:
    """predict's stderr line: images, rate, precision, views; or this rank's share."""
    n = len(result.images) + len(result.failures)
    now = n - result.resumed
    timing = f"in {result.seconds:.1f} s ({now / max(result.seconds, 1e-9):.1f}/s)"
    if result.resumed:
        timing = f"({result.resumed:,} saved by an interrupted run; {now:,} predicted {timing})"
    if not result.wrote:  # another rank joins the shares and writes the files
        stderr.print(
            f"this rank: {n:,} images {timing}, {result.precision}; {result.split}", highlight=False
        )
        return
    engine = predictor.engine
    notes = [note for note in (engine.precision_note, engine.compile_note) if note]
    note = f" ({'; '.join(notes)})" if notes else ""
    split = f"; {result.split}" if result.split else ""
    bad = len(result.failures)
    count = f"{n - bad:,} of {n:,} images predicted" if bad else f"{n:,} images"
    stderr.print(
        f"{count} {timing}, {result.precision}{note}, "
        f"{predictor.tta.count} view(s) per image{split}{result.skipped}"
        + "".join(f"; wrote {path}" for path in written),
        highlight=False,
    )


def print_describe_summary(result, how: str, out: Path | None) -> None:
    """describe's stderr line: images, time, where the prompts came from, the mean match."""
    n = len(result.descriptions)
    if not n:
        return
    stats = f"{result.from_metadata:,} prompts from the files' metadata"
    if any(d.match is not None for d in result.descriptions):  # a model ran
        stats += f", mean match {result.mean_match:.4f}"
    stats += _judge_summary(result.descriptions)
    stderr.print(
        f"{n:,} images described in {result.seconds:.1f} s ({how}); {stats}"
        + result.search.summary()
        + (f"; wrote {out}" if out else ""),
        highlight=False,
    )


def _judge_summary(descriptions: list[Description]) -> str:
    """A captioner's judge over a run: mean cosine of the chosen candidates, mean spread, and
    how often a candidate beat the bank's prompt ('' without a judge)."""
    judged = [d for d in descriptions if d.judge_choice is not None]
    if not judged:
        return ""
    cosine = sum(d.judge_cosine or 0.0 for d in judged) / len(judged)
    spread = sum(d.judge_spread or 0.0 for d in judged) / len(judged)
    won = sum(d.judge_choice == "caption" for d in judged)
    return (
        f", judge cosine {cosine:.4f} (candidates' spread {spread:.4f}), "
        f"caption beat the bank on {won:,} of {len(judged):,}"
    )


def print_submission_check(check, file: Path) -> None:
    """The score on stdout (with --truth); `ok` or every problem on stderr."""
    if check.score is not None:
        console.print(f"score (mean cosine) {check.score:.4f}", highlight=False, soft_wrap=True)
    if check.ok:
        stderr.print(f"{file}: ok, {check.images:,} images x {check.dim} values", highlight=False)
    for problem in check.problems:  # parse errors already start with `FILE:LINE`
        named = problem if problem.startswith(str(file)) else f"{file}: {problem}"
        stderr.print(f"[bold red]problem:[/] {escape(named)}", highlight=False)


def print_ensemble_fit(result, out: Path) -> None:
    """Each member's mean cosine and weight, then the blend's (stdout)."""
    for member, weight, score in zip(
        result.members, result.weights, result.member_scores, strict=True
    ):
        line = f"{score:.4f}  weight {weight:.3f}  {member}"
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    blend = f"{result.blend_score:.4f}  blend of {len(result.members)} ({result.rows:,} rows)"
    console.print(blend, highlight=False, markup=False, soft_wrap=True)
    stderr.print(f"wrote {out}", highlight=False)


def print_metadata_summary(results: list[GenerationMetadata], search) -> None:
    found = sum(r.prompt is not None for r in results)
    stderr.print(
        f"{len(results):,} files, {found:,} with an embedded prompt" + search.summary(),
        highlight=False,
    )


def print_metadata_run(
    results: list[GenerationMetadata], search: ImageSearch, *, as_json: bool, quiet: bool
) -> None:
    """`metadata`'s output: one JSON object a line (`--json`) or the table, then the summary."""
    if as_json:
        for result in results:
            typer.echo(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        print_metadata(results)
    if not quiet:
        print_metadata_summary(results, search)


def print_describe_run(
    result: DescribeRun,
    *,
    json_body: dict[str, Any] | None,
    how: str,
    out: Path | None,
    quiet: bool,
) -> None:
    """`describe`'s output: the JSON body (`--json`) or the table on stdout (not where `quiet`
    and written to `out`: the file is the output); the summary (unless quiet) and the failures
    on stderr."""
    if json_body is not None:
        typer.echo(json.dumps(json_body))
    elif result.descriptions and not (quiet and out is not None):
        print_descriptions(result.descriptions)
    if not quiet:
        print_describe_summary(result, how, out)
    print_failures(result.failures)


def print_caption_run(run: CaptionRun, kind: str) -> None:
    """`describe --sidecar`'s summary line and its failures, on stderr."""
    stderr.print(run.summary(kind), highlight=False, markup=False)
    print_failures(run.failures)
