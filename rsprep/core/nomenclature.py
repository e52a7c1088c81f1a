"""CORINE Land Cover codes and the two BigEarthNet nomenclatures (pure data, no I/O).

docs/labels.md: the reference maps hold CLC level-3 codes; the BEN-19 nomenclature (reBEN) groups
them into 19 classes, and the BigEarthNet v1 nomenclature keeps 43 of the 44 level-3 classes
(glaciers, 335, never occur in BigEarthNet). Codes outside a nomenclature, 0 (no polygon) and
999 (CLC NODATA) are UNLABELED in it.

Each nomenclature has two class orders: its **native** order (BEN-19: the paper table top to
bottom, as TorchGeo uses it; BEN-43: CLC code order, as BigEarthNet v1) and the **alphabetical**
order (ConfigILM's default). Every multi-hot vector rsprep writes names its order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from rsprep.errors import InvalidParameterError

#: CLC level-3 codes and their official names.
CLC_LEVEL3: dict[int, str] = {
    111: "Continuous urban fabric",
    112: "Discontinuous urban fabric",
    121: "Industrial or commercial units",
    122: "Road and rail networks and associated land",
    123: "Port areas",
    124: "Airports",
    131: "Mineral extraction sites",
    132: "Dump sites",
    133: "Construction sites",
    141: "Green urban areas",
    142: "Sport and leisure facilities",
    211: "Non-irrigated arable land",
    212: "Permanently irrigated land",
    213: "Rice fields",
    221: "Vineyards",
    222: "Fruit trees and berry plantations",
    223: "Olive groves",
    231: "Pastures",
    241: "Annual crops associated with permanent crops",
    242: "Complex cultivation patterns",
    243: "Land principally occupied by agriculture, with significant areas of natural vegetation",
    244: "Agro-forestry areas",
    311: "Broad-leaved forest",
    312: "Coniferous forest",
    313: "Mixed forest",
    321: "Natural grasslands",
    322: "Moors and heathland",
    323: "Sclerophyllous vegetation",
    324: "Transitional woodland-shrub",
    331: "Beaches, dunes, sands",
    332: "Bare rocks",
    333: "Sparsely vegetated areas",
    334: "Burnt areas",
    335: "Glaciers and perpetual snow",
    411: "Inland marshes",
    412: "Peat bogs",
    421: "Salt marshes",
    422: "Salines",
    423: "Intertidal flats",
    511: "Water courses",
    512: "Water bodies",
    521: "Coastal lagoons",
    522: "Estuaries",
    523: "Sea and ocean",
}
CLC_NODATA = 999
#: Every value a CLC code field may hold: the 44 level-3 codes and 999 (NODATA / unclassified).
CLC_CODES: frozenset[int] = frozenset(CLC_LEVEL3) | {CLC_NODATA}

# BEN-19 in paper order (docs/labels.md table, top to bottom) with the CLC codes of each class.
_BEN19: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Urban fabric", (111, 112)),
    ("Industrial or commercial units", (121,)),
    ("Arable land", (211, 212, 213)),
    ("Permanent crops", (221, 222, 223, 241)),
    ("Pastures", (231,)),
    ("Complex cultivation patterns", (242,)),
    ("Land principally occupied by agriculture, with significant areas of natural vegetation", (243,)),
    ("Agro-forestry areas", (244,)),
    ("Broad-leaved forest", (311,)),
    ("Coniferous forest", (312,)),
    ("Mixed forest", (313,)),
    ("Natural grassland and sparsely vegetated areas", (321, 333)),
    ("Moors, heathland and sclerophyllous vegetation", (322, 323)),
    ("Transitional woodland, shrub", (324,)),
    ("Beaches, dunes, sands", (331,)),
    ("Inland wetlands", (411, 412)),
    ("Coastal wetlands", (421, 422)),
    ("Inland waters", (511, 512)),
    ("Marine waters", (521, 522, 523)),
)

# BigEarthNet v1 (43 classes, CLC code order); the names are BigEarthNet v1's own spelling.
_BEN43: tuple[tuple[str, tuple[int, ...]], ...] = tuple(
    (name, (code,))
    for code, name in sorted(
        {
            **{c: n for c, n in CLC_LEVEL3.items() if c != 335},
            321: "Natural grassland",
            324: "Transitional woodland/shrub",
            332: "Bare rock",
            412: "Peatbogs",
        }.items()
    )
)


@dataclass(frozen=True)
class Nomenclature:
    """A mapping from CLC codes to classes, with its native and alphabetical class orders."""

    name: str
    native_order_name: str
    classes: tuple[str, ...]  # native order
    codes: tuple[tuple[int, ...], ...]  # CLC codes of each class, native order
    alphabetical: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alphabetical", tuple(sorted(self.classes)))

    @property
    def size(self) -> int:
        return len(self.classes)

    def code_lut(self) -> np.ndarray:
        """int16 (65536,): CLC code → class index in native order, -1 for UNLABELED (a copy)."""
        return self._lut.copy()

    @cached_property
    def _lut(self) -> np.ndarray:
        lut = np.full(65536, -1, dtype=np.int16)
        for i, codes in enumerate(self.codes):
            lut[list(codes)] = i
        return lut

    @cached_property
    def _class_by_code(self) -> dict[int, str]:
        return {c: name for name, codes in zip(self.classes, self.codes, strict=True) for c in codes}

    def class_of(self, code: int) -> str | None:
        """The class name of a CLC code, or None when the code is UNLABELED here."""
        return self._class_by_code.get(int(code))

    def order(self, which: str) -> tuple[str, ...]:
        """Class names in ``which`` order: ``native`` (or the order's own name) or ``alphabetical``."""
        if which in ("native", self.native_order_name):
            return self.classes
        if which == "alphabetical":
            return self.alphabetical
        raise InvalidParameterError(
            f"class order {which!r} is not native, {self.native_order_name} or alphabetical"
        )

    def describe(self) -> dict:
        """JSON-ready description: both class orders and the code table (written beside every vector)."""
        return {
            "nomenclature": self.name,
            "class_orders": {
                self.native_order_name: list(self.classes),
                "alphabetical": list(self.alphabetical),
            },
            "clc_codes": {c: list(k) for c, k in zip(self.classes, self.codes, strict=True)},
            "unlabeled": "every other code, 0 (no CLC polygon) and 999 (CLC NODATA)",
        }


BEN19 = Nomenclature("ben19", "paper", tuple(n for n, _ in _BEN19), tuple(c for _, c in _BEN19))
BEN43 = Nomenclature("ben43", "clc", tuple(n for n, _ in _BEN43), tuple(c for _, c in _BEN43))
NOMENCLATURES: dict[str, Nomenclature] = {BEN19.name: BEN19, BEN43.name: BEN43}


def get(name: str) -> Nomenclature:
    """The nomenclature called ``name`` (``ben19`` or ``ben43``)."""
    try:
        return NOMENCLATURES[name.lower()]
    except KeyError:
        raise InvalidParameterError(
            f"nomenclature {name!r} is not one of {', '.join(NOMENCLATURES)}"
        ) from None
