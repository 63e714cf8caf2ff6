"""Molecules -> graphs with RDKit: a fixed categorical vocabulary of atom and bond features.

The vocabulary follows the one OGB's molecule datasets made standard (Hu et al., "Open Graph
Benchmark", 2020), with the in-ring flag added to bonds. Every feature is an index into a fixed
list of values; a value outside the list maps to the last index ("misc"), so no molecule fails
featurisation and the table sizes never depend on the data:

=========================  ========================================================  =====
atom feature               values (then "misc")                                      size
=========================  ========================================================  =====
atomic_num                 1 .. 118                                                  119
chirality                  unspecified, tetrahedral CW, tetrahedral CCW, other       5
degree                     0 .. 10 (explicit neighbours: hydrogens count when kept)  12
formal_charge              -5 .. 5                                                   12
num_hs                     0 .. 8 (hydrogens attached, implicit and explicit)       10
num_radical_electrons      0 .. 4                                                    6
hybridization              SP, SP2, SP3, SP3D, SP3D2                                 6
is_aromatic                False, True                                               2
is_in_ring                 False, True                                               2
=========================  ========================================================  =====

=========================  ========================================================  =====
bond feature               values (then "misc")                                      size
=========================  ========================================================  =====
bond_type                  single, double, triple, aromatic                         5
stereo                     none, Z, E, cis, trans, any                               7
is_conjugated              False, True                                               2
is_in_ring                 False, True                                               2
=========================  ========================================================  =====

(The booleans have no "misc" entry.) :data:`ATOM_FEATURE_DIMS` and :data:`BOND_FEATURE_DIMS` are
the table sizes the ``AtomEncoder`` / ``BondEncoder`` of :mod:`glocal.modalities.graph.adapter`
use by default.

A molecule becomes ``inputs`` long ``[N, 9]``, ``edge_index`` long ``[2, 2B]`` (each bond in both
directions, bond ``b`` at columns ``2b`` and ``2b + 1``) and ``edge_attr`` long ``[2B, 4]``. RDKit
is imported on use.
"""
from __future__ import annotations

import numpy as np

from glocal.core.errors import DataError

__all__ = ["ATOM_FEATURES", "BOND_FEATURES", "ATOM_FEATURE_DIMS", "BOND_FEATURE_DIMS", "mol_to_graph",
           "smiles_to_mol", "smiles_to_graph"]

ATOM_FEATURES: tuple[tuple[str, tuple], ...] = (
    ("atomic_num", tuple(range(1, 119))),
    ("chirality", ("CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "CHI_OTHER")),
    ("degree", tuple(range(0, 11))),
    ("formal_charge", tuple(range(-5, 6))),
    ("num_hs", tuple(range(0, 9))),
    ("num_radical_electrons", tuple(range(0, 5))),
    ("hybridization", ("SP", "SP2", "SP3", "SP3D", "SP3D2")),
)
BOND_FEATURES: tuple[tuple[str, tuple], ...] = (
    ("bond_type", ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")),
    ("stereo", ("STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY")),
)
_FLAGS_ATOM = ("is_aromatic", "is_in_ring")
_FLAGS_BOND = ("is_conjugated", "is_in_ring")
ATOM_FEATURE_NAMES = tuple(n for n, _ in ATOM_FEATURES) + _FLAGS_ATOM
BOND_FEATURE_NAMES = tuple(n for n, _ in BOND_FEATURES) + _FLAGS_BOND
ATOM_FEATURE_DIMS = tuple(len(v) + 1 for _, v in ATOM_FEATURES) + (2, 2)  # (119, 5, 12, 12, 10, 6, 6, 2, 2)
BOND_FEATURE_DIMS = tuple(len(v) + 1 for _, v in BOND_FEATURES) + (2, 2)  # (5, 7, 2, 2)

# value -> index, per feature; a missing value is "misc" (the table's last index)
_ATOM_INDEX = [{v: i for i, v in enumerate(values)} for _, values in ATOM_FEATURES]
_BOND_INDEX = [{v: i for i, v in enumerate(values)} for _, values in BOND_FEATURES]


def _atom_row(atom) -> list[int]:
    raw = (atom.GetAtomicNum(), atom.GetChiralTag().name, atom.GetDegree(), atom.GetFormalCharge(),
           atom.GetTotalNumHs(includeNeighbors=True), atom.GetNumRadicalElectrons(), atom.GetHybridization().name)
    row = [index.get(v, len(index)) for index, v in zip(_ATOM_INDEX, raw)]
    return row + [int(atom.GetIsAromatic()), int(atom.IsInRing())]


def _bond_row(bond) -> list[int]:
    raw = (bond.GetBondType().name, bond.GetStereo().name)
    row = [index.get(v, len(index)) for index, v in zip(_BOND_INDEX, raw)]
    return row + [int(bond.GetIsConjugated()), int(bond.IsInRing())]


def mol_to_graph(mol, name: str = "molecule") -> dict[str, np.ndarray]:
    """An RDKit molecule -> ``dict(inputs [N, 9], edge_index [2, 2B], edge_attr [2B, 4])``, int64
    numpy arrays in the molecule's atom order (hydrogens are nodes only if the molecule holds them
    as atoms: ``Chem.AddHs``). A molecule without atoms is a :class:`DataError` naming it."""
    n = mol.GetNumAtoms()
    if n == 0:
        raise DataError(f"molecule {name} has no atoms (an empty SMILES or mol block?): a graph needs nodes")
    inputs = np.array([_atom_row(a) for a in mol.GetAtoms()], dtype=np.int64).reshape(n, len(ATOM_FEATURE_DIMS))
    bonds = mol.GetBonds()
    edge_index = np.empty((2, 2 * len(bonds)), dtype=np.int64)
    edge_attr = np.empty((2 * len(bonds), len(BOND_FEATURE_DIMS)), dtype=np.int64)
    for b, bond in enumerate(bonds):
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        edge_index[:, 2 * b], edge_index[:, 2 * b + 1] = (i, j), (j, i)
        edge_attr[2 * b] = edge_attr[2 * b + 1] = _bond_row(bond)
    return dict(inputs=inputs, edge_index=edge_index, edge_attr=edge_attr)


def smiles_to_mol(smiles: str, explicit_h: bool = False, name: str | None = None):
    """Parse and sanitise a SMILES string (hydrogens added as atoms when ``explicit_h``); an invalid
    one is a :class:`DataError` naming it and saying what RDKit found wrong."""
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    who = f"molecule {name} " if name is not None else ""
    if not isinstance(smiles, str):
        raise DataError(f"{who}has a SMILES of type {type(smiles).__name__}; expected a string")
    block = BlockLogs()  # RDKit's own messages go to stderr; ours go into the error  # noqa: F841
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        raise DataError(f"{who}has an invalid SMILES string {smiles!r}: RDKit cannot parse it (a syntax error: "
                        f"unbalanced brackets or ring closures, an unknown element, ...)")
    try:
        Chem.SanitizeMol(mol)
    except Exception as e:  # noqa: BLE001 - RDKit raises several types; all mean the same here
        raise DataError(f"{who}has an invalid SMILES string {smiles!r}: {type(e).__name__}: {e}") from e
    return Chem.AddHs(mol) if explicit_h else mol


def smiles_to_graph(smiles: str, explicit_h: bool = False, name: str | None = None) -> dict[str, np.ndarray]:
    """``smiles_to_mol`` then ``mol_to_graph``.

    >>> g = smiles_to_graph("CCO")
    >>> g["inputs"].shape, g["edge_index"].tolist(), g["edge_attr"].shape
    ((3, 9), [[0, 1, 1, 2], [1, 0, 2, 1]], (4, 4))
    >>> smiles_to_graph("CCO", explicit_h=True)["inputs"].shape
    (9, 9)
    """
    return mol_to_graph(smiles_to_mol(smiles, explicit_h, name), smiles if name is None else name)
