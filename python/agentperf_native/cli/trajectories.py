"""``agentperf-native trajectories``: convert, synth, inspect. Parses and prints; the work is in
:mod:`agentperf_native.trajectories`."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import click

from ..trajectories import (FORMATS, BadSources, ImportOptions, SynthConfig, TrajectoryError, TokenizerError,
                           compute_stats, convert_files, format_hint, format_stats, generate, load, write_jsonl)
from ..trajectories.stats import compare_to_target
from .exit_codes import CouldNotRun

_ERRORS = (TrajectoryError, TokenizerError, OSError)
#: How these commands name a file's real format, when a message says it may be of another one.
NAME_THE_FORMAT = f"pass --format with the file's real format (one of {', '.join(FORMATS)})"


@click.group("trajectories")
def trajectories() -> None:
    """Convert recorded agent runs to the trajectory schema, generate synthetic sets, inspect them."""


@trajectories.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Schema v1 JSONL file to write.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Read every source as this format (default: detect per file).")
@click.option("--tokenizer", default="cl100k_base", show_default=True,
              help="Counts output tokens of sources that record none: cl100k_base, o200k_base, o200k_harmony "
                   "or a tokenizer.json path.")
@click.option("--estimate-output-tokens/--no-estimate-output-tokens", default=True, show_default=True,
              help="Count unrecorded output lengths with --tokenizer (else leave them unset).")
@click.option("--mooncake-sessions", type=click.Choice(["prefix", "none"]), default="prefix", show_default=True,
              help="Mooncake: chain requests into sessions by shared hash prefix, or one trajectory per request.")
@click.option("--skip-bad", is_flag=True,
              help="Convert the files that can be converted and list the others (default: write nothing when any "
                   "file fails).")
def convert(sources: tuple[Path, ...], output: Path, fmt: str | None, tokenizer: str,
            estimate_output_tokens: bool, mooncake_sessions: str, skip_bad: bool) -> None:
    """Convert SOURCES (files or folders) into one schema v1 JSONL file.

    Formats: mini-swe-agent .traj.json, SWE-agent .traj, Claude Code session JSONL, OpenAI-messages
    JSONL, kv-cache-tester session JSON, Mooncake JSONL, and schema v1 itself."""
    options = ImportOptions(tokenizer=tokenizer, estimate_output_tokens=estimate_output_tokens,
                            mooncake_sessions=mooncake_sessions)
    skipped: list[tuple[Path, str]] | None = [] if skip_bad else None
    try:
        results = convert_files(sources, output, fmt, options, skipped=skipped)
    except BadSources as e:
        raise CouldNotRun(f"{e}\nfix or remove them ({'--format names the real format of a file; ' if not fmt else ''}"
                          "--skip-bad converts the others)") from None
    except _ERRORS as e:
        raise CouldNotRun(format_hint(e, NAME_THE_FORMAT)) from None
    for _path, reason in skipped or []:
        click.echo(f"skipped {reason}", err=True)
    n_conv = n_turns = 0
    for path, name, result in results:
        turns = sum(len(c.turns) for c in result.conversations)
        n_conv += len(result.conversations)
        n_turns += turns
        click.echo(f"{name:16} {path}: {len(result.conversations)} trajectories, {turns} turns")
        for note in result.notes:
            click.echo(f"  note: {note}")
    click.echo(f"wrote {output}: {n_conv} trajectories, {n_turns} turns from {len(results)} files"
               + (f" ({len(skipped)} skipped)" if skipped else ""))


@trajectories.command()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Schema v1 JSONL file to write.")
@click.option("--seed", type=int, default=SynthConfig.seed, show_default=True)
@click.option("--conversations", type=int, default=SynthConfig.conversations, show_default=True)
@click.option("--mean-input-tokens", type=int, default=SynthConfig.mean_input_tokens, show_default=True)
@click.option("--min-input-tokens", type=int, default=SynthConfig.min_input_tokens, show_default=True)
@click.option("--max-input-tokens", type=int, default=SynthConfig.max_input_tokens, show_default=True)
@click.option("--output-median-tokens", type=int, default=SynthConfig.output_median_tokens, show_default=True)
@click.option("--output-p95-tokens", type=int, default=SynthConfig.output_p95_tokens, show_default=True)
@click.option("--max-output-tokens", type=int, default=SynthConfig.max_output_tokens, show_default=True)
@click.option("--turns-median", type=int, default=SynthConfig.turns_median, show_default=True)
@click.option("--turns-sigma", type=float, default=SynthConfig.turns_sigma, show_default=True,
              help="Spread of the turn count (log-normal sigma).")
@click.option("--max-turns", type=int, default=SynthConfig.max_turns, show_default=True)
@click.option("--tool-delay-median-s", type=float, default=SynthConfig.tool_delay_median_s, show_default=True)
@click.option("--tool-delay-min-s", type=float, default=SynthConfig.tool_delay_min_s, show_default=True)
@click.option("--tool-delay-max-s", type=float, default=SynthConfig.tool_delay_max_s, show_default=True)
@click.option("--tool-delay-sigma", type=float, default=SynthConfig.tool_delay_sigma, show_default=True,
              help="Spread of the tool delays (log-normal sigma).")
@click.option("--tool-output-sigma", type=float, default=SynthConfig.tool_output_sigma, show_default=True,
              help="Spread of the tool output lengths (log-normal sigma).")
@click.option("--system-tokens", type=int, default=SynthConfig.system_tokens, show_default=True,
              help="Length of the system prompt all trajectories share.")
@click.option("--tokenizer", default=SynthConfig.tokenizer, show_default=True,
              help="Tokenizer the lengths are counted in.")
def synth(output: Path, **kw: object) -> None:
    """Generate a seeded synthetic set (defaults: the AA-AgentPerf shape, the bundled default set)."""
    cfg = SynthConfig(**kw)  # type: ignore[arg-type]
    try:
        conversations = generate(cfg)
    except TokenizerError as e:
        raise CouldNotRun(str(e)) from None
    except ValueError as e:  # the settings cannot make a set (checked, or found while planning it)
        raise click.UsageError(_option_names(str(e))) from None
    try:
        write_jsonl(conversations, output)
    except OSError as e:
        raise CouldNotRun(f"cannot write {output}: {e.strerror}") from None
    click.echo(f"wrote {output}: {len(conversations)} trajectories, {sum(len(c.turns) for c in conversations)} turns")
    click.echo(format_stats(compute_stats(conversations, cfg.tokenizer)))


def _option_names(message: str) -> str:
    """A SynthConfig message with its field names written as this command's options (every field is one)."""
    for name in sorted((f.name for f in dataclasses.fields(SynthConfig)), key=len, reverse=True):
        message = re.sub(rf"(?<![\w-]){name}\b", "--" + name.replace("_", "-"), message)
    return message


@trajectories.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Read as this format (default: detect).")
@click.option("--tokenizer", default="cl100k_base", show_default=True,
              help="Counts input tokens of chat turns that record none.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write histogram PNGs into this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.option("--targets/--no-targets", default=False,
              help="Compare with the AA-AgentPerf target shape (the synth defaults).")
def inspect_(paths: tuple[Path, ...], fmt: str | None, tokenizer: str, plot_dir: Path | None, as_json: bool,
            targets: bool) -> None:
    """Sessions, turns, input/output length and tool delay distributions, and the theoretical
    prefix-cache hit rate of PATHS (schema v1 or any convertible format)."""
    try:
        conversations = load(list(paths), fmt, ImportOptions(tokenizer=tokenizer))
        if not conversations:
            raise TrajectoryError(f"{', '.join(map(str, paths))}: no trajectories to inspect")
        stats = compute_stats(conversations, tokenizer)
    except _ERRORS as e:
        raise CouldNotRun(format_hint(e, NAME_THE_FORMAT)) from None
    rows = compare_to_target(stats, SynthConfig()) if targets else []
    if as_json:
        out = stats.to_dict()
        if targets:
            out["targets"] = [{"what": w, "measured": m, "target": t, "ok": ok} for w, m, t, ok in rows]
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(format_stats(stats))
        if targets:
            click.echo("against the AA-AgentPerf target shape:")
            for what, measured, target, ok in rows:
                click.echo(f"  {what:32} {measured:>12,.2f}  target {target:>10,.2f}  {'ok' if ok else 'OFF'}")
    if plot_dir is not None:
        from ..trajectories.plots import write_histograms
        try:
            written = write_histograms(conversations, plot_dir, tokenizer, title=", ".join(p.name for p in paths))
        except RuntimeError as e:
            raise CouldNotRun(str(e)) from None
        click.echo(f"wrote {len(written)} histograms into {plot_dir}", err=as_json)


if __name__ == "__main__":
    trajectories(sys.argv[1:], prog_name="agentperf-native trajectories")
