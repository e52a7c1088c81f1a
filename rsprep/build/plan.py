"""The build plan: per product and stage "to do", "up to date" or "failed before", and why.

Computed without writing anything, from the stages' own up-to-date rules: a stage is up to date when
its work-store manifest records the same parameters, the same input fingerprint and this rsprep
version (:meth:`rsprep.store.workstore.TileStore.is_current`), and its outputs are there. A
dataset-wide step is up to date when ``OUT/build.json`` records it done with the same key — a digest
of the previous step's key and the step's recipe section, starting from the digest of every store's
manifest and the metadata inputs — and the dataset's own ``build.json`` is the one the build left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsprep.build import record as rec
from rsprep.errors import RsprepError
from rsprep.inputs.safe import read_product
from rsprep.store.atomic import digest, fingerprint_files
from rsprep.store.workstore import LABELS_TABLE, MANIFEST, REFERENCE_ARRAYS, S1_TABLE, STACK_ARRAYS, TileStore

TODO, CURRENT, FAILED_BEFORE = "to do", "up to date", "failed before"
#: What a finished dataset-wide step leaves in the dataset folder (checked before it counts as up to date).
STEP_OUTPUTS = {
    "metadata": "metadata.parquet",
    "convert:lmdb": "lmdb",
    "convert:zarr": "zarr/dataset.zarr",
    "stats": "stats.json",
    "card": "README.md",
    "validate": "checksums.sha256",
}


@dataclass
class Entry:
    stage: str
    status: str
    reason: str = ""
    product: str | None = None


@dataclass
class Plan:
    products: list[Path]
    work: Path
    dataset: Path
    stages: list[str]  # the per-product stages, in order
    entries: dict[str, list[Entry]] = field(default_factory=dict)  # product -> its stages
    steps: list[Entry] = field(default_factory=list)  # the dataset-wide steps
    prefixes: dict[str, str] = field(default_factory=dict)  # product -> its store name
    discovery: Any = None  # the S1 scenes (found once)
    clc: Any = None  # the opened CLC source
    input_list: Any = None  # the products against the recipe's input list (rsprep.build.input_list)

    def to_do(self) -> int:
        return sum(e.status != CURRENT for es in [*self.entries.values(), self.steps] for e in es)

    def lines(self) -> list[str]:
        """The plan as text: one line per product and stage, then the dataset-wide steps."""
        out = [f"plan: {len(self.products)} product(s); work store {self.work}; dataset {self.dataset}"]
        out += self.input_list.lines() if self.input_list is not None else []
        for product, entries in self.entries.items():
            out.append(f"  {Path(product).name}")
            out += [f"    {e.stage:<10} {e.status:<13} {e.reason}".rstrip() for e in entries]
        out.append("  dataset")
        out += [f"    {e.stage:<14} {e.status:<13} {e.reason}".rstrip() for e in self.steps]
        left = self.to_do()
        out.append(f"{left} task(s) to do" if left else "everything is up to date")
        return out


def product_stages(recipe) -> list[str]:
    return ["patch", *(["stack"] if recipe.stack_options() is not None else []), "s1", "reference"]


def dataset_steps(recipe) -> list[str]:
    """The dataset-wide steps of ``recipe``, in order."""
    outputs = recipe.outputs
    names = ["metadata", "split", *(step for step, _name, _opts in noise_steps(recipe))]
    names += [f"convert:{fmt}" for fmt in outputs.formats]
    return names + [
        s
        for s, on in (
            ("stats", outputs.stats),
            ("card", outputs.card),
            ("validate", outputs.validation.enabled),
        )
        if on
    ]


def make_plan(recipe, products: list[Path], out: Path, *, s1: Path | None, clc: Path, inputs: dict) -> Plan:
    """The plan of building ``products`` with ``recipe`` into ``out`` (nothing is written).

    Raises:
        RsprepError: the S1 folder or the CLC file cannot be used (before any product is looked at).
    """
    from rsprep.inputs.clc import open_clc
    from rsprep.inputs.s1 import find_scenes

    out = Path(out)
    plan = Plan(list(products), out / rec.WORK, out / rec.DATASET, product_stages(recipe))
    s1_opts = recipe.s1_options()
    if s1 is not None and getattr(recipe.s1, "source", "scenes") == "v1":
        from rsprep.stages.s1_v1 import V1Source

        plan.discovery = V1Source.open(s1)  # BigEarthNet v1.0 S1 patches, not scenes
    else:
        plan.discovery = find_scenes(s1, polarisations=s1_opts.polarisations) if s1 is not None else None
    ref = recipe.reference
    plan.clc = open_clc(clc, layer=ref.layer, code_field=ref.code_field, crs=ref.clc_crs)
    previous = rec.read_record(out)
    failed = {(f["file"], f["stage"]): f["message"] for f in previous.get("failures", [])}
    for p in plan.products:
        plan.entries[str(p)] = _product_entries(recipe, p, plan, failed)
    plan.steps = step_entries(recipe, plan, previous, inputs)
    return plan


def _product_entries(recipe, product: Path, plan: Plan, failed: dict) -> list[Entry]:
    entries: list[Entry] = []
    status, reason, store = _patch_status(recipe, product, plan)
    for stage in plan.stages:
        if stage != "patch":
            if store is None or status != CURRENT:
                status, reason = TODO, f"after {entries[-1].stage}"
            else:
                status, reason = _store_status(recipe, stage, store, plan)
        if status == TODO and (str(product), stage) in failed:
            status, reason = FAILED_BEFORE, failed[(str(product), stage)]
        entries.append(Entry(stage, status, reason, str(product)))
    return entries


def _patch_status(recipe, product: Path, plan: Plan) -> tuple[str, str, TileStore | None]:
    from rsprep.stages.patch import stored_result, usable_band_files

    opts = recipe.patch_options()
    try:
        pr = read_product(product)
        plan.prefixes[str(product)] = pr.patch_prefix
        if pr.level == "L1C":
            return TODO, "L1C: sen2cor's output is checked when the build runs", None
        dest = plan.work / pr.patch_prefix
        fp = fingerprint_files(pr.source_files(usable_band_files(pr, opts)))
    except (RsprepError, OSError) as exc:
        return TODO, f"the product cannot be read now: {exc}", None
    if not (dest / MANIFEST).is_file():
        return TODO, "not patched yet", None
    if stored_result(dest, opts.to_dict(), fp["digest"]) is None:
        return TODO, "input, parameters or rsprep version changed", None
    return CURRENT, "", TileStore.open(dest)


def _store_status(recipe, stage: str, store: TileStore, plan: Plan) -> tuple[str, str]:
    """Whether ``stage`` of ``store`` is current, by the rule the stage itself applies."""
    patch_rec = store.stage("patch") or {}
    if stage == "stack":
        params, inputs, outputs = (
            {"resampling": recipe.stack_options().resampling},
            digest(patch_rec),
            [STACK_ARRAYS],
        )
    elif stage == "s1":
        if plan.discovery is None:
            return CURRENT, "no --s1 folder: not paired"
        opts = recipe.s1_options()
        if hasattr(plan.discovery, "root"):  # a V1Source: the v1 S1 stage's own rule
            from rsprep.stages.s1_v1 import S1V1Options, stage_inputs

            v1_opts = S1V1Options.of(opts)
            params = v1_opts.parameters()
            inputs = stage_inputs(store, plan.discovery.root, v1_opts).digest
        else:
            scenes = fingerprint_files([f for s in plan.discovery.scenes for f in s.files.values()])
            params = opts.parameters()
            inputs = digest([patch_rec.get("inputs_digest"), patch_rec.get("parameters"), scenes["digest"]])
        outputs = [S1_TABLE]
        if not opts.skip_bad and (store.stage("s1") or {}).get("excluded"):
            return TODO, "bad S1 scenes were left out before"
    else:
        from rsprep.stages import reference

        source = plan.clc
        params = reference.parameters(source, recipe.reference_options())
        inputs = reference.inputs_digest(store.grid, bool(store.product.get("quality_passed", True)), source)
        outputs = [REFERENCE_ARRAYS, LABELS_TABLE]
    if store.stage(stage) is None:
        return TODO, f"no {stage} yet"
    if not all((store.path / o).exists() for o in outputs) or not store.is_current(stage, params, inputs):
        return TODO, "input, parameters or rsprep version changed"
    return CURRENT, ""


def step_entries(
    recipe, plan: Plan, previous: dict, inputs: dict, *, products_done: bool = False
) -> list[Entry]:
    """The dataset-wide steps; keys chain, so once one step is to do every later one is too.

    ``products_done``: the per-product stages have just run (the plan's entries are from before).
    """
    names = dataset_steps(recipe)
    if not products_done and any(e.status != CURRENT for es in plan.entries.values() for e in es):
        return [Entry(n, TODO, "after the products") for n in names]
    keys = step_keys(recipe, plan, inputs, names)
    done = previous.get("steps", {})
    same_dataset = rec.file_digest(plan.dataset / "build.json") == previous.get("dataset_record")
    entries, stale = [], None
    for n in names:
        out = STEP_OUTPUTS.get(n)
        if stale is None:
            if done.get(n, {}).get("key") != keys[n] or done[n].get("status") != "done":
                stale = "inputs or recipe changed" if n in done else "not built yet"
            elif not same_dataset:
                stale = "the dataset was changed outside this build"
            elif out and not (plan.dataset / out).exists():
                stale = f"{out} is missing"
            if stale is not None:
                entries.append(Entry(n, TODO, stale))
                stale = f"after {n}"
                continue
            entries.append(Entry(n, CURRENT))
        else:
            entries.append(Entry(n, TODO, stale))
    return entries


def step_keys(recipe, plan: Plan, inputs: dict, names: list[str]) -> dict[str, str]:
    """The key of every dataset-wide step (see the module docstring)."""
    resolved = recipe.resolved()
    stores = {}
    for product in plan.products:
        name = plan.prefixes.get(str(product))
        if name is not None and (plan.work / name / MANIFEST).is_file():
            stores[name] = digest(TileStore.open(plan.work / name).manifest)
    key = digest({"stores": stores, "inputs": inputs})
    variants = dict(_variant_items(recipe))
    keys = {}
    for n in names:
        section = n.split(":")[0]
        if section == "noise":
            part = variants.get(n)
        elif section == "metadata":
            part = [resolved.get("metadata"), resolved.get("split"), resolved.get("inputs")]
        else:
            part = resolved.get(section, resolved.get("outputs"))
        key = keys[n] = digest([key, n, part])
    return keys


def noise_steps(recipe) -> list[tuple[str, str | None, Any]]:
    """(step name, variant name or None, options) per noise variant: ``noise:<name>``, or ``noise:<n>``
    (its place in the recipe, from 1) for a variant named by the noise stage itself."""
    return [(f"noise:{name or i}", name, opts) for i, (name, opts) in enumerate(recipe.noise_variants(), 1)]


def _variant_items(recipe):
    from dataclasses import asdict, is_dataclass

    for step, _name, opts in noise_steps(recipe):
        yield step, asdict(opts) if is_dataclass(opts) else repr(opts)
