"""`fleetguard eval detect`: detection quality measured on the simulator (command layer only;
the evaluation is :mod:`fleetguard.sim.evaluation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from fleetguard.cli.common import console, err_console, handles_errors
from fleetguard.cli.output import JsonOption

if TYPE_CHECKING:
    from fleetguard.sim.evaluation import DetectionStats, EvaluationResult

eval_app = typer.Typer(help="Measure fleetguard against its targets and its peers.",
                       no_args_is_help=True)


@eval_app.command("detect")
@handles_errors
def eval_detect_command(
    seeds: Annotated[int, typer.Option(min=1, max=1000,
                                       help="Attack cohorts per profile and start time.")] = 2,
    devices: Annotated[int, typer.Option(
        min=1, max=1000, help="Benign devices per variation and profile.")] = 2,
    hours: Annotated[float, typer.Option(
        min=1, max=24 * 365, help="Hours each benign device reports.")] = 12,
    as_json: JsonOption = False,
    fail_on_miss: Annotated[bool, typer.Option(
        "--fail-on-miss", help="Exit 1 when a target is missed.")] = False,
) -> None:
    """Run the simulator's attacks and benign variation through detection, beside static
    thresholds: detection rate, time to detect, false alarms per device-day."""
    from fleetguard.sim.evaluation import EvalSettings, run_evaluation

    settings = EvalSettings(seeds=seeds, benign_devices=devices, benign_hours=hours)
    with err_console.status("evaluating") as status:
        result = run_evaluation(settings, progress=lambda what: status.update(f"evaluating "
                                                                              f"{what}"))
    if as_json:
        from fleetguard.cli.output import print_json

        print_json(result.to_document())
    else:
        _print(result)
    if fail_on_miss and not result.passed:
        raise typer.Exit(1)


def _print(result: EvaluationResult) -> None:
    from fleetguard.cli.output import Column, print_table

    names = [d.name for d in result.detectors]
    s = result.settings
    trials = len(s.attack_at_min) * s.seeds * 3
    print(f"{len(result.scenarios)} attacks, each on one device of a cohort of "
          f"{len(result.scenarios) + s.cohort_peers} (one per attack and {s.cohort_peers} "
          f"normal); {len(result.benign)} benign variations x {s.benign_devices} devices in a "
          f"cohort per profile for {s.benign_hours:g} h; a report every {s.interval_s:g} s; "
          f"first-seen rules learn for {s.learning_min:g} min\n")
    print_table(
        [Column("attack"), Column("trials"), *(Column(n) for n in names)],
        [[scenario.value, str(next(iter(by.values())).trials),
          *(_detection(by[n]) for n in names)] for scenario, by in result.scenarios.items()],
        title=f"Attacks: detected within {s.horizon_reports} reports | median | p90 time to "
              f"detect, in reports ({trials} trials: 3 profiles x {s.seeds} seeds x start "
              f"minutes {', '.join(map(str, s.attack_at_min))})")
    console.print()
    rows = [[variation.value, f"{next(iter(by.values())).device_days:g}",
             *(f"{by[n].alarms} ({by[n].per_device_day:.3f})" for n in names)]
            for variation, by in result.benign.items()]
    totals = [result.benign_total(n) for n in names]
    rows.append(["all benign", f"{totals[0].device_days:g}",
                 *(f"{t.alarms} ({t.per_device_day:.3f}, 95% <= {t.upper_95:.3f})"
                   for t in totals)])
    print_table([Column("benign"), Column("device-days"), *(Column(n) for n in names)],
                rows, title="False alarms on benign devices (per device-day)")
    for name in names:
        for variation, by in result.benign.items():
            stats = by[name]
            if stats.causes:
                fired = ", ".join(f"{cause} x{count}"
                                  for cause, count in sorted(stats.causes.items()))
                where = ", ".join(f"{p} x{n}" for p, n in sorted(stats.profiles.items()))
                console.print(f"  {name} on {variation.value}: {fired} ({where})")
    console.print()
    for target in result.targets():
        mark = "[green]PASS[/]" if target.passed else "[red]FAIL[/]"
        console.print(f"{mark} {target.detector}: {target.name} {target.required}: "
                      f"{target.measured}")


def _detection(stats: DetectionStats) -> str:
    return f"{stats.rate:.0%} | {_n(stats.median)} | {_n(stats.p90)}"


def _n(value: float) -> str:
    return "never" if value == float("inf") else f"{value:g}"
