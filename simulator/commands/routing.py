"""``moesim routing``: a scenario's routing model as per-GPU token counts, busiest links and step-time cost."""

from __future__ import annotations

import io
import json
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from moesim.simulator.cli import (INPUT_ERRORS, JSON_OPT, PRESET_OPT, PROFILE_OPT, SCENARIO_ARG, SET_OPT, app,
                           console, fail)
from moesim.workloads.files import check_target, write_atomic

SAVE_OPT = typer.Option(None, "--save", help="Write the sampled expert ids (tokens × layers × top_k) as .npy.")
TOP_OPT = typer.Option(8, "--top", min=1, max=100_000, help="How many of the busiest GPUs to list.")


@app.command()
def routing(scenario: Optional[str] = SCENARIO_ARG, preset: Optional[str] = PRESET_OPT,
            set_: Optional[list[str]] = SET_OPT, as_json: bool = JSON_OPT, profile: Optional[str] = PROFILE_OPT,
            top: int = TOP_OPT, save: Optional[str] = SAVE_OPT,
            force: bool = typer.Option(False, "--force", help="Overwrite an existing --save file.")) -> None:
    """Show what the scenario's routing does to the EP group: per-GPU expert rows, busiest links, step time."""
    from moesim.simulator.profile_input import user_profile
    from moesim.simulator.simulate import simulate
    from moesim.workloads.ep_load import scenario_ep_load
    from moesim.workloads.loader import load_scenario
    from moesim.workloads.routing import RoutingInputs, sample_routing

    try:
        sc = load_scenario(scenario, preset, set_ or [])
        if sc.model.moe is None:
            fail(f"{sc.model.name} is dense: there is no routing to show")
        if save:
            save = save if save.endswith(".npy") else save + ".npy"  # the name np.load users expect
            check_target(save, force, "--save")
        load = scenario_ep_load(sc)
        prof = user_profile(profile)
        step_s = simulate(sc, prof).step_time_s
        balanced = sc.model_copy(update={"routing": type(sc.routing)()})
        balanced_s = simulate(balanced, prof).step_time_s if sc.routing != balanced.routing else step_s
        if save:
            moe, r = sc.model.moe, sc.routing
            ids = sample_routing(r.name, RoutingInputs(moe.routed_experts, moe.top_k, moe.groups, moe.groups_per_token,
                                                       moe.gating, sc.model.hidden, r.zipf_alpha, r.file,
                                                       r.gate_weights, sc.run.seed))
            buffer = io.BytesIO()
            np.save(buffer, ids.transpose(1, 0, 2))
            write_atomic(save, buffer.getvalue(), force, "--save")
    except INPUT_ERRORS as err:
        fail(str(err))
    par, moe = sc.parallelism, sc.model.moe
    # Per micro-batch each GPU routes its tokens; the EP group's picks land on experts by their shares.
    tokens = par.micro_batch_size * par.seq_len // par.cp // par.tp
    mean_rows = tokens * moe.top_k
    data = {"scenario": sc.name, "step_time_s": step_s, "balanced_step_time_s": balanced_s,
            "tokens_per_gpu_per_micro_batch": tokens,
            "expert_tokens_per_micro_batch": (load.expert_share * mean_rows * par.ep).round(1).tolist(),
            "gpu_expert_rows_per_micro_batch": (load.gpu_rows * mean_rows).round(1).tolist(),
            **load.to_dict()}
    if as_json:
        print(json.dumps(data, indent=1))
        return
    r = sc.routing
    what = {"zipf": f"zipf (alpha {r.zipf_alpha:g})", "file": f"file {r.file}"}.get(r.name, r.name)
    console.print(f"[bold]{sc.model.name}[/] routing {what}, EP{sc.parallelism.ep}, "
                  f"{load.placement.redundant} redundant experts", highlight=False)
    rows = load.gpu_rows
    console.print(f"busiest GPU {load.busiest_gpu}: {load.gemm_factor:.2f}× the mean expert rows "
                  f"(least loaded {rows.min():.2f}×); busiest InfiniBand link {load.stats.ib_link_factor:.2f}×, "
                  f"busiest NVLink {load.stats.nvl_link_factor:.2f}× the mean; per token "
                  f"{load.stats.ib_nodes:.2f} remote nodes, {load.stats.nvl_copies:.2f} NVLink forwards",
                  highlight=False)
    console.print(f"per micro-batch of {tokens} tokens per GPU: the busiest GPU's grouped GEMMs run "
                  f"{rows.max() * mean_rows:,.0f} expert rows, the mean GPU's {mean_rows:,}", highlight=False)
    table = Table(title=f"the {min(top, len(rows))} busiest GPUs of the EP group", title_justify="left")
    for col in ("GPU", "node", "expert rows ×mean", "tokens reaching it", "experts held"):
        table.add_column(col, justify="right")
    per_node = min(sc.parallelism.ep, sc.cluster.node.gpus_per_node)
    held: dict[int, list[int]] = {}
    for e, gpus in enumerate(load.placement.copies):
        for g in gpus:
            held.setdefault(g, []).append(e)
    for g in np.argsort(-rows, kind="stable")[:top]:
        table.add_row(str(g), str(g // per_node), f"{rows[g]:.3f}", f"{load.gpu_reach[g]:.1%}",
                      " ".join(str(e) for e in held.get(int(g), [])))
    console.print(table)
    change = step_s / balanced_s - 1
    console.print(f"step time {step_s:.3f} s; with balanced routing {balanced_s:.3f} s ({change:+.1%})",
                  highlight=False)
    if save:
        console.print(f"expert ids written to {save}", highlight=False)
