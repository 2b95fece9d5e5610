"""How ``moesim plan`` prints its answer: what was searched and dropped, the ranked plans and why the first wins,
the time/cost front; or, when nothing meets the constraints, the closest plans and what would have to change."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from moesim.simulator.cli import console as terminal
from moesim.simulator.planner.answer import duration

# Piped or logged output is not cut to 80 columns: a plan row is wider than that.
console = terminal if terminal.is_terminal else Console(width=150)


def _layout_cells(layout: dict) -> list[str]:
    sched = layout["schedule"] + (f":{layout['virtual_stages']}" if layout["schedule"] == "interleaved" else "")
    return [f"{layout['gpus']:,} {layout['gpu'].upper()}",
            f"dp{layout['dp']} tp{layout['tp']} pp{layout['pp']} cp{layout['cp']} ep{layout['ep']}", sched,
            f"{layout['micro_batch_size']}×{layout['micro_batches']}", f"{layout['global_batch']:,}",
            f"{layout['zero_stage']}/{layout['recompute']}"]


LAYOUT_COLUMNS = ("GPUs", "layout", "schedule", "mbs×n", "batch", "ZeRO/recomp.")


def plans_table(title: str, plans: list[dict], numbered: bool = True) -> Table:
    table = Table(title=title, title_justify="left")
    for col in (("#",) if numbered else ()) + LAYOUT_COLUMNS + ("days", "w/ fail", "GPU-hours", "cost USD", "MWh",
                                                                 "MFU", "free GB"):
        table.add_column(col, justify="right")
    for i, p in enumerate(plans, 1):
        table.add_row(*([str(i)] if numbered else []), *_layout_cells(p["layout"]), f"{p['training_days']:.1f}",
                      f"{p['training_days_with_failures']:.1f}", f"{p['gpu_hours']:,.0f}", f"{p['cost_usd']:,.0f}",
                      f"{p['energy_mwh']:,.0f}", f"{p['mfu_causal']:.1%}", f"{p['memory_headroom_gb']:.1f}")
    return table


def print_plan(answer: dict, outcome) -> None:
    request, search = answer["request"], answer["search"]
    goal = [f"{request['tokens'] / 1e12:g}T tokens"]
    if request["deadline_days"] is not None:
        goal.append(f"within {duration(request['deadline_days'])}")
    if request["budget_usd"] is not None:
        goal.append(f"within ${request['budget_usd']:,.0f}")
    prices = request.get("prices") or {}
    price = (", ".join(f"{k.upper()} ${prices.get(k, request['price_per_gpu_hour']):g}" for k in request["gpus_kinds"])
             + " per GPU-hour") if prices else f"${request['price_per_gpu_hour']:g}/GPU-hour"
    console.print(f"[bold]{answer['model']}[/] on {', '.join(k.upper() for k in request['gpus_kinds'])}: "
                  f"{' '.join(goal)} at {price}; global batch from "
                  f"{answer['global_batch_from']}; ranked by {request['objective']}", highlight=False)
    for gpus, why_not in search["unusable_gpus"].items():
        console.print(f"[yellow]--gpus {gpus}[/]: {why_not}", highlight=False)
    console.print(f"searched {search['layouts']:,} layouts in {search['wall_s']:.1f} s: {search['candidates']:,} "
                  f"valid, {search['priced_layer_kinds']} layer-kind prices, {search['simulated']} simulated in full"
                  + ("; no other layout's lower bound beats the first plan: proven" if search["exact"] and answer["plans"]
                     else "" if search["exact"] else f"; not proven: {not_proven(answer)}"),
                  highlight=False)
    dropped = Table(title="set aside, by reason", title_justify="left", show_header=False, box=None)
    dropped.add_column(justify="right")
    dropped.add_column()
    for reason, count in search["dropped"].items():
        dropped.add_row(f"{count:,}", reason)
    console.print(dropped)
    if not answer["plans"]:
        print_impossible(answer)
        return
    console.print(plans_table(f"best {len(answer['plans'])} by {request['objective']}", answer["plans"]))
    console.print(f"why #1: {'; '.join(answer['plans'][0]['reasons'])}", highlight=False)
    if len(answer["pareto"]) > 1:
        console.print(plans_table("time/cost Pareto front of the simulated plans that meet every constraint",
                                  answer["pareto"], numbered=False))


def print_impossible(answer: dict) -> None:
    """One block: nothing meets the constraints; the closest plans; what would have to change."""
    console.print("[bold red]No plan meets every constraint.[/]", highlight=False)
    if answer["closest"]:
        console.print(plans_table("closest plans (fit in memory; miss the deadline or budget)", answer["closest"]))
    console.print("To make it work, one of:", highlight=False)
    for line in answer["what_must_change"]:
        console.print(f"  - {line}", highlight=False)


def not_proven(answer: dict) -> str:
    """Why the search stopped before its bounds proved the first plan, and how far its bounds are from it."""
    search, request = answer["search"], answer["request"]
    limit = ("--max-simulations " + str(request["max_simulations"]) if "max-simulations" in search["stopped_by"]
             else f"--time-limit {request['time_limit_s']:g} s")
    text = f"stopped at {limit} with {search['open_candidates']:,} layouts whose lower bounds could still beat it"
    if not answer["plans"] or search["open_bound_days"] is None:
        return text
    first = answer["plans"][0]
    if request["objective"] == "cost":
        bound, best = search["open_bound_cost_usd"], first["cost_usd"]
        return (text + f" (best bound ${bound:,.0f}, {1 - bound / best:.1%} under #1's ${best:,.0f}; the ranking may "
                f"miss a better plan)")
    bound, best = search["open_bound_days"], first["training_days"]
    return text + f" (best bound {bound:.1f} days, {1 - bound / best:.1%} under #1's {best:.1f}; the ranking may " \
        "miss a better plan)"
