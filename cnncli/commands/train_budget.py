"""`cnn train DIR --time-budget MINUTES`: race the candidate recipes, then finish the best."""

from __future__ import annotations


def race_recipes(plan, given, minutes: float, console):
    """--time-budget: race the candidate recipes in plan's run folder; returns the plan
    that finishes the winner there within what is left of the budget."""
    from cnncli.data.stats import dataset_stats
    from cnncli.reporting.report import candidates_table, recipe_table
    from cnncli.training.budget import Entry, final_plan, race
    from cnncli.training.new_run import new_config
    from cnncli.training.recipe_variants import candidate_recipes
    from cnncli.training.run import write_recipe

    stats = dataset_stats(plan.dataset, seed=plan.cfg.train.seed)
    entries, seen = [], {}
    pretrained = _pretrained_entry(plan, given, stats)
    if pretrained is not None:  # photo-like data: ImageNet features race the scratch recipes
        entries.append(pretrained)
    for recipe in candidate_recipes(stats):
        cfg = new_config(given, recipe)  # the user's flags win in every candidate
        if repr(cfg) not in seen:
            seen[repr(cfg)] = Entry(recipe.name, recipe.note, cfg)
            entries.append(seen[repr(cfg)])
        # The fixed recipe races to the end (or the candidate that equals it under the
        # user's flags): the winner is never worse than it on val.
        seen[repr(cfg)].protected |= recipe.name == "fixed"
    budget = minutes * 60
    console.print(f"run folder: [bold]{plan.run_dir}[/bold]")
    if plan.recipe is not None:
        console.print(recipe_table(plan.recipe["rows"], "recipe (chosen from the data; flags win)"))
    if len(entries) < 2:
        console.print("your flags leave one recipe: no race; it trains within the budget")
        winner, left = entries[0], budget
    else:
        names = ", ".join(e.name for e in entries)
        console.print(
            f"time budget {minutes:g} min: racing {len(entries)} recipes ({names}) by "
            "successive halving on the val split, half the budget; the best one finishes"
            + (
                f" ({next(e.name for e in entries if e.protected)} races to the last rung: "
                "the winner is never worse than the fixed recipe on val)"
                if any(e.protected for e in entries)
                else ""
            )
        )
        winner, left = race(plan, entries, budget, _RaceDisplay(console))
        console.print(candidates_table([e.row() for e in entries]))
        console.print(
            f"winner: [bold]{winner.name}[/bold] ({winner.note}); "
            + (
                f"it finished its {len(winner.history)} epochs in the race"
                if winner.done
                else f"{max(left, 0) / 60:.1f} min left to finish it"
            )
        )
    info = dict(plan.recipe or {})
    info["race"] = {"winner": winner.name, "candidates": [e.row() for e in entries]}
    write_recipe(plan.run_dir, info)
    final = final_plan(plan, winner, left)
    if final.cfg.train.epochs < winner.cfg.train.epochs:
        console.print(
            f"its {winner.cfg.train.epochs} epochs do not fit in the time left: its "
            f"learning-rate schedule now ends at epoch {final.cfg.train.epochs}"
        )
    final.recipe = info
    return final


def _pretrained_entry(plan, given, stats):
    """The pretrained candidate (recipe_pretrained.py) for photo-like data when the user chose
    no network or start of their own; else None."""
    from cnncli.training import warm_start
    from cnncli.training.budget import Entry
    from cnncli.training.new_run import new_config, pretrained_for

    explicit = given.explicit()
    recipe = pretrained_for(stats, explicit)
    if recipe is None:
        return None
    cfg = new_config(given, recipe)
    src = warm_start.resolve(cfg.train.init)
    chosen = {c.key for c in recipe.choices}
    images = len(plan.dataset.splits.get("train", []))
    cfg = warm_start.configure(cfg, src, explicit | chosen, images)
    return Entry(recipe.name, recipe.note, cfg, init=src)


class _RaceDisplay:
    """One line per candidate slice and per rung."""

    def __init__(self, console) -> None:
        self.console = console

    def on_slice_start(self, entry, rung: int, seconds: float) -> None:
        self.console.print(f"  rung {rung}: {entry.name} for ~{seconds:.0f} s ...")

    def on_slice_end(self, entry, rung: int) -> None:
        acc, _ = entry.score
        self.console.print(
            f"  rung {rung}: {entry.name}: {len(entry.history)} epochs, best val acc "
            f"{100 * acc:.1f}% ({entry.seconds:.0f} s in all)"
        )

    def on_rung_end(self, rung: int, kept, dropped) -> None:
        if dropped:
            out = ", ".join(e.name for e in dropped)
            self.console.print(f"rung {rung}: kept {', '.join(e.name for e in kept)}; out: {out}")
