"""``rsprep build --finalize``: is every product done? (docs/build.md#shards-and-finalize)

The plan decides: a product is done when each of its stages is up to date. An L1C product's patch
stage always plans as to do (sen2cor's output is fingerprinted when the build runs); it counts as done
when a shard record says its chain finished with the same recipe and the same input fingerprint and
its store is there. Anything else is missing, named with its shard (for each shard count a record
in ``OUT/shards`` uses) and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsprep.build import shards
from rsprep.build.plan import CURRENT, Plan
from rsprep.errors import RsprepError
from rsprep.store.workstore import MANIFEST

L1C_REASON = "L1C:"


class ShardsNotDoneError(RsprepError, RuntimeError):
    """``--finalize`` ran before every product's per-product stages were done."""


PRODUCT_SECTIONS = ("inputs", "patch", "stack", "s1", "reference")


def unfinished(plan: Plan, recipe, inputs: dict, records: dict) -> list[dict[str, str]]:
    """The products whose per-product stages are not done: ``product``, ``shard``, ``reason``."""
    resolved = recipe.resolved()
    same = {
        s: r
        for s, r in records.items()
        if all(r.get("recipe", {}).get(k) == resolved[k] for k in PRODUCT_SECTIONS)
    }
    digests = {str(p): (fp or {}).get("digest") for p, fp in zip(plan.products, inputs["s2"], strict=True)}
    counts = sorted({s.count for s in records})
    where = {n: shards.assignment(list(plan.entries), n) for n in counts}
    missing = []
    for product, entries in plan.entries.items():
        if all(e.status == CURRENT for e in entries) or _l1c_done(plan, product, digests[product], same):
            continue
        first = next(e for e in entries if e.status != CURRENT)
        reason = f"{first.stage} {first.status}" + (f": {first.reason}" if first.reason else "")
        failed = _failure(product, records)
        if failed and failed not in reason:
            reason += f" (its shard failed: {failed})"
        label = ", ".join(f"shard {where[n][product]}/{n}" for n in counts) or "no shard ran yet"
        missing.append({"product": product, "shard": label, "reason": reason})
    return missing


def refusal(missing: list[dict[str, str]], total: int) -> ShardsNotDoneError:
    shown = "; ".join(f"{Path(m['product']).name} ({m['shard']}: {m['reason']})" for m in missing[:20])
    more = f"; and {len(missing) - 20} more" if len(missing) > 20 else ""
    return ShardsNotDoneError(
        f"--finalize: {len(missing)} of {total} product(s) are not built yet: {shown}{more}; run their "
        "shards (rsprep build ... --shard I/N) and then --finalize again, or add --keep-going to build "
        "the dataset without them"
    )


def _l1c_done(plan: Plan, product: str, digest: str | None, records: dict) -> bool:
    patch = plan.entries[product][0]
    if patch.status == CURRENT or not patch.reason.startswith(L1C_REASON) or digest is None:
        return False
    for rec in records.values():
        done = rec.get("products", {}).get(product)
        recorded = {s["path"]: s["digest"] for s in rec.get("inputs", {}).get("s2", []) if s}
        if done is None or recorded.get(product) != digest or done.get("store") is None:
            continue
        if _failure(product, {None: rec}) is None and (plan.work.parent / done["store"] / MANIFEST).is_file():
            return True
    return False


def _failure(product: str, records: dict) -> str | None:
    for rec in records.values():
        for f in rec.get("failures", []):
            if f.get("file") == product:
                return f"{f.get('stage')}: {f.get('message')}"
    return None


def merged_products(records: dict, plan: Plan) -> dict[str, Any]:
    """The per-product entries of the shard records (a later record wins), for ``OUT/build.json``."""
    products: dict[str, Any] = {}
    wanted = set(plan.entries)
    for shard, rec in records.items():
        for name, entry in rec.get("products", {}).items():
            if name in wanted:
                products[name] = {**entry, "shard": shard.label}
    return {p: products[p] for p in plan.entries if p in products}
