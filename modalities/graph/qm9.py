"""QM9 (Ramakrishnan et al., "Quantum chemistry structures and properties of 134 kilo molecules",
Scientific Data 2014): 130,831 small organic molecules (up to 9 heavy atoms of C, N, O, F; 29
atoms with hydrogens) with B3LYP/6-31G(2df,p) geometries and properties, from PyPI ``qm9pack``.

**Source.** ``qm9pack`` 1.0.3 ships the table as three CSV parts (its ``get_data('qm9')``
concatenates them and merges the polarisability tensor; it imports ``pkg_resources``, which
setuptools >= 81 no longer has, so this module reads the same CSV files itself, found without
importing the package). The rows are the 130,831 molecules that passed QM9's consistency check,
in QM9 index order (``Index`` 1 .. 133,885 with 3,054 gaps).

**Graphs.** One node per atom, hydrogens included (QM9's geometries have them), featurised with
the fixed categorical vocabulary of :mod:`glocal.modalities.graph.features` (``inputs [N, 9]``,
``edge_attr [E, 4]``); bonds from the SMILES (RDKit). ``pos [N, 3]`` are the atoms' coordinates
in ångström. The SMILES and the coordinates list atoms in different orders, so each molecule's
SMILES graph is matched to the bonds its geometry implies (atoms within 1.15x the sum of their
covalent radii; 1.25, 1.05 and 1.35 tried when that does not give the SMILES's bond count), and
the RDKit atoms are renumbered into the coordinates' order: node ``i`` is atom ``i`` of the XYZ
block. For 4 strained cages (QM9 72320, 133831, 133857, 133859) no cutoff reproduces the SMILES's
bonds; their SMILES graph is embedded in the graph of all pairs within 1.6x the radii, choosing the
embedding whose bonds are shortest in total. All 130,831 molecules match (processing reports any
that would not; such a molecule fails to load, by name).

**Targets** (``targets=('gap',)`` selects; any of :data:`QM9_TARGETS`), in the units of the
standard benchmark (PyG's QM9, SchNet, DimeNet): energies converted from hartree to eV
(``energy_unit='eV'``, 1 Ha = 27.211386246 eV; ``'meV'`` or ``'hartree'`` on request):

======== ============================================== ===================
name     quantity                                       unit
======== ============================================== ===================
mu       dipole moment                                  D (debye)
alpha    isotropic polarisability                       a0^3 (bohr^3)
homo     HOMO energy                                    eV
lumo     LUMO energy                                    eV
gap      HOMO-LUMO gap                                  eV
r2       electronic spatial extent                      a0^2 (bohr^2)
zpve     zero-point vibrational energy                  eV
U0       internal energy at 0 K                         eV
U        internal energy at 298.15 K                    eV
H        enthalpy at 298.15 K                           eV
G        free energy at 298.15 K                        eV
Cv       heat capacity at 298.15 K                      cal/(mol K)
U0_atom  atomisation energy at 0 K (U0 - atom refs)     eV
U_atom   atomisation energy at 298.15 K                 eV
H_atom   atomisation enthalpy at 298.15 K               eV
G_atom   atomisation free energy at 298.15 K            eV
A, B, C  rotational constants                           GHz
======== ============================================== ===================

The atomisation energies subtract QM9's per-element reference energies (its ``atomref`` table,
:data:`ATOM_REFS`). The benchmark reports the gap's MAE in meV: ``MAE [eV] x 1000``.

**Split** (:func:`qm9_split`): ``numpy.random.default_rng(seed).permutation(130831)`` over the
rows in file order, seed 0 by default: the first 110,000 are the training set, the next 10,000 the
validation set, the remaining 10,831 the test set. ``limit=n`` keeps the first ``n`` of a split.

**Cache** (``<cache_dir>/qm9``, default ``~/.cache/glocal/data/qm9``): the processed graphs of all
130,831 molecules in one file (``qm9-graphs-v<version>-<settings>.pt``, tensors only, loads with
``weights_only=True``), made by the first full construction (about 2-3 minutes on one CPU core)
and read by every later one, any split, in about a second; a construction with ``limit`` and no
full file processes and caches only its molecules. The target table (every target of every
molecule, a few MB) has its own file, so target statistics never need the graphs. The log says
which happened (``QM9: graphs: cache hit ...`` / ``cache miss ...``).

**Normalisation.** ``ds.target_mean`` and ``ds.target_std`` (one per selected target, in the
selected units, population std) are those of the full training split whatever the dataset's
split or limit: give them to ``RegressionHead(target_mean=..., target_std=...)`` and
``RegressionLoss(target_std=...)`` (:func:`qm9_target_stats` computes them without a dataset).
"""
from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.logging import print_log

from glocal.core.errors import ConfigError, DataError, DatasetNotFoundError, GlocalError

from .base import GraphDataset, GraphStore, _check_settings, check_graph
from .cache import cache_root, load_cache, save_cache, settings_key
from .features import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS, mol_to_graph, smiles_to_mol

__all__ = ["QM9", "qm9_split", "qm9_target_stats", "qm9_molecule", "QM9_TARGETS", "QM9_NUM_MOLECULES",
           "QM9_SPLIT_SIZES", "ATOM_REFS", "HARTREE_TO_EV", "read_qm9_table"]

QM9_NUM_MOLECULES = 130_831
QM9_SPLIT_SIZES = dict(train=110_000, val=10_000, test=QM9_NUM_MOLECULES - 120_000)  # test: 10,831
HARTREE_TO_EV = 27.211386246  # CODATA 2018, as PyG's QM9
_ENERGY_SCALE = dict(eV=HARTREE_TO_EV, meV=1000 * HARTREE_TO_EV, hartree=1.0)
ELEMENTS = ("H", "C", "N", "O", "F")  # the order of qm9pack's Stoichiometry counts
COVALENT_RADII = dict(H=0.31, C=0.76, N=0.71, O=0.66, F=0.57)  # ångström (Cordero et al. 2008)
_BOND_SCALES = (1.15, 1.25, 1.05, 1.35)
_LOOSE_SCALE, _MAX_MATCHES = 1.6, 20_000  # the fallback for strained cages (see _geometry_match)

# QM9's atomref table: energy of each free atom, hartree, for U0, U, H, G (elements H, C, N, O, F)
ATOM_REFS = dict(
    U0=(-0.500273, -37.846772, -54.583861, -75.064579, -99.718730),
    U=(-0.498857, -37.845355, -54.582445, -75.063163, -99.717314),
    H=(-0.497912, -37.844411, -54.581501, -75.062219, -99.716370),
    G=(-0.510927, -37.861317, -54.598897, -75.079532, -99.733544),
)

# name -> (qm9pack column, unit; "energy" is converted from hartree)
_COLUMNS = dict(mu=("Dipole_debye", "D"), alpha=("Polarizability_bohr3", "a0^3"), homo=("HOMO_au", "energy"),
                lumo=("LUMO_au", "energy"), gap=("HOMO_LUMO_gap_au", "energy"), r2=("R2_bohr2", "a0^2"),
                zpve=("ZPVE_au", "energy"), U0=("InternalEnergy_0K_au", "energy"),
                U=("InternalEnergy_298K_au", "energy"), H=("Enthalphy_298K_au", "energy"),
                G=("GibbsFreeEnergy_298K_au", "energy"), Cv=("Heatcapacity_Cv_cal_mol_K", "cal/(mol K)"),
                A=("RotA_GHz", "GHz"), B=("RotB_GHz", "GHz"), C=("RotC_GHz", "GHz"))
QM9_TARGETS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "U0", "U", "H", "G", "Cv", "U0_atom", "U_atom",
               "H_atom", "G_atom", "A", "B", "C")
_RAW = tuple(_COLUMNS)  # the raw columns kept in the target table, in this order
_TABLE_VERSION = 1
_GRAPHS_VERSION = 1  # bump when the graphs made from the same molecules change
_MEMO: dict = {}  # path -> (mtime, GraphStore): the train, val and test sets of one process share one store


def _qm9pack_data() -> Path:
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError("QM9 comes from PyPI qm9pack (a ~100 MB wheel with the full table): "
                                   "`pip install qm9pack==1.0.3`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [p for p in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv") if not (folder / p).is_file()]
    if missing:
        raise DatasetNotFoundError(f"qm9pack's data files {missing} are missing under {folder}: reinstall qm9pack")
    return folder


def read_qm9_table(columns: Sequence[str]):
    """The qm9pack table (a pandas DataFrame of ``columns``), rows in file order (QM9 index order)."""
    import pandas as pd

    folder = _qm9pack_data()
    parts = [pd.read_csv(folder / f"qm9_part{i}.csv", usecols=list(columns)) for i in (1, 2, 3)]
    table = pd.concat(parts, ignore_index=True)
    if len(table) != QM9_NUM_MOLECULES:
        raise DataError(f"qm9pack's table under {folder} has {len(table)} molecules; QM9 has {QM9_NUM_MOLECULES}")
    return table


def qm9_split(split: str, seed: int = 0) -> np.ndarray:
    """Rows (positions in qm9pack's table) of a split: a ``default_rng(seed)`` permutation of the
    130,831 rows cut into 110,000 train, 10,000 val and 10,831 test.

    >>> [len(qm9_split(s)) for s in ("train", "val", "test")]
    [110000, 10000, 10831]
    """
    perm = np.random.default_rng(seed).permutation(QM9_NUM_MOLECULES)
    cut = dict(train=(0, 110_000), val=(110_000, 120_000), test=(120_000, QM9_NUM_MOLECULES))
    if split not in cut:
        raise ConfigError(f"QM9 split must be 'train', 'val' or 'test'; got {split!r}")
    return perm[slice(*cut[split])]


# ------------------------------------------------------------------------------------------------
# one molecule
# ------------------------------------------------------------------------------------------------
def _parse_elements(text: str) -> list[str]:
    return [e.strip(" '\"") for e in text.strip("[]").split(",")]


def _parse_xyz(text: str) -> np.ndarray:
    return np.array(text.replace("[", "").replace("]", "").split(","), dtype=np.float64).reshape(-1, 3)


def _geometry_match(mol, elements: Sequence[str], xyz: np.ndarray, name: str) -> list[int]:
    """``order[t]``: the RDKit atom that is atom ``t`` of the XYZ block (a graph isomorphism between
    the SMILES's bonds and the bonds the geometry implies, element-preserving)."""
    from rdkit import Chem

    def bare(atoms: Sequence[int], bonds) -> Chem.RWMol:
        m = Chem.RWMol()
        for z in atoms:
            a = Chem.Atom(int(z))
            a.SetNoImplicit(True)
            m.AddAtom(a)
        for i, j in bonds:
            m.AddBond(int(i), int(j), Chem.BondType.SINGLE)
        return m

    query = bare([a.GetAtomicNum() for a in mol.GetAtoms()],
                 [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()])
    z = [Chem.GetPeriodicTable().GetAtomicNumber(e) for e in elements]
    radii = np.array([COVALENT_RADII.get(e, 0.75) for e in elements])
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    counts = []
    for scale in _BOND_SCALES:
        i, j = np.nonzero(np.triu(dist < scale * (radii[:, None] + radii[None]), 1))
        counts.append(len(i))
        if len(i) != mol.GetNumBonds():
            continue
        match = bare(z, zip(i, j)).GetSubstructMatch(query)  # match[rdkit atom] = xyz atom
        if match:
            order = [0] * len(match)
            for q, t in enumerate(match):
                order[t] = q
            return order
    # strained cages (4 of QM9's molecules): no cutoff gives the SMILES's bonds exactly. Embed the
    # SMILES graph in the looser graph of every pair within 1.6x the radii and keep the embedding
    # whose bonds are shortest in total
    i, j = np.nonzero(np.triu(dist < _LOOSE_SCALE * (radii[:, None] + radii[None]), 1))
    matches = bare(z, zip(i, j)).GetSubstructMatches(query, uniquify=False, maxMatches=_MAX_MATCHES)
    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]).reshape(-1, 2)
    if matches:
        m = np.array(matches)  # [M, atoms]: m[k, rdkit atom] = xyz atom
        lengths = dist[m[:, bonds[:, 0]], m[:, bonds[:, 1]]]  # [M, bonds]
        best = m[lengths.sum(1).argmin()]
        if lengths.sum(1).min() / max(len(bonds), 1) < 2.0:
            order = [0] * len(best)
            for q, t in enumerate(best.tolist()):
                order[t] = q
            return order
    raise DataError(f"molecule {name}: its SMILES graph ({mol.GetNumBonds()} bonds) does not match the bonds its 3D "
                    f"coordinates imply ({counts} at {_BOND_SCALES} x the covalent radii, and no embedding within "
                    f"{_LOOSE_SCALE}x): atom order unknown")


def qm9_molecule(smiles: str, elements: Sequence[str], xyz: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """One QM9 molecule -> ``dict(inputs, edge_index, edge_attr, pos)`` with hydrogens as nodes and
    node ``i`` = atom ``i`` of the coordinates (see the module doc)."""
    from rdkit import Chem

    mol = smiles_to_mol(smiles, explicit_h=True, name=name)
    if mol.GetNumAtoms() != len(elements) or xyz.shape != (len(elements), 3):
        raise DataError(f"molecule {name}: the SMILES {smiles!r} has {mol.GetNumAtoms()} atoms with hydrogens but the "
                        f"coordinates list {len(elements)} elements and {xyz.shape[0]} positions")
    mol = Chem.RenumberAtoms(mol, _geometry_match(mol, elements, xyz, name))
    if [a.GetSymbol() for a in mol.GetAtoms()] != list(elements):
        raise DataError(f"molecule {name}: atoms renumbered to the coordinates' order do not carry its elements")
    graph = mol_to_graph(mol, name)
    graph["pos"] = xyz.astype(np.float32)
    return graph


# ------------------------------------------------------------------------------------------------
# the table of targets, and the graphs
# ------------------------------------------------------------------------------------------------
def _table_path(cache_dir) -> Path:
    return cache_root("qm9", cache_dir) / f"qm9-targets-v{_TABLE_VERSION}.pt"


def _target_table(cache_dir, table=None) -> dict:
    """Raw target columns (source units) ``[G, 15]`` float64, element counts ``[G, 5]``, QM9 index
    ``[G]``, from the cache or from ``table`` / the CSV files (then cached)."""
    path = _table_path(cache_dir)
    obj = load_cache(path, _TABLE_VERSION, "QM9 target table")
    if obj is not None:
        return obj
    if table is None:
        table = read_qm9_table(["Index", "Stoichiometry"] + [c for c, _ in _COLUMNS.values()])
    stoich = np.array([[int(v) for v in s.strip("[]").split(",")] for s in table["Stoichiometry"]], dtype=np.int64)
    obj = dict(version=_TABLE_VERSION, columns=list(_RAW),
               raw=torch.from_numpy(np.array(table[[_COLUMNS[k][0] for k in _RAW]], dtype=np.float64)),
               stoichiometry=torch.from_numpy(stoich), index=torch.from_numpy(np.array(table["Index"], dtype=np.int64)))
    save_cache(path, obj)
    return obj


def _check_targets(targets, energy_unit: str) -> tuple[str, ...]:
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    unknown = [t for t in targets if t not in QM9_TARGETS]
    if not targets or unknown:
        raise ConfigError(f"QM9 targets must be a non-empty selection of {QM9_TARGETS}; got {targets}")
    if energy_unit not in _ENERGY_SCALE:
        raise ConfigError(f"QM9 energy_unit must be one of {tuple(_ENERGY_SCALE)}; got {energy_unit!r}")
    return targets


def _targets_from(table: dict, targets: Sequence[str], energy_unit: str) -> np.ndarray:
    """``[G, T]`` float64 values of ``targets`` in the chosen units."""
    raw, stoich = table["raw"].numpy(), table["stoichiometry"].numpy().astype(np.float64)
    out = np.empty((len(raw), len(targets)))
    for t, name in enumerate(targets):
        base = name[:-5] if name.endswith("_atom") else name
        value = raw[:, _RAW.index(base)]
        if name.endswith("_atom"):
            value = value - stoich @ np.array(ATOM_REFS[base])
        out[:, t] = value * _ENERGY_SCALE[energy_unit] if _COLUMNS[base][1] == "energy" else value
    return out


def target_units(targets: Sequence[str], energy_unit: str = "eV") -> tuple[str, ...]:
    """The unit of each target."""
    units = (_COLUMNS[t.removesuffix("_atom")][1] for t in targets)
    return tuple(energy_unit if unit == "energy" else unit for unit in units)


def qm9_target_stats(targets=("gap",), energy_unit: str = "eV", seed: int = 0, cache_dir=None) -> tuple[list, list]:
    """``(mean, std)`` of ``targets`` over the training split, one float per target (population std,
    as ``glocal.tasks.regression.target_stats``), read from the target table (no graph is made)."""
    targets = _check_targets(targets, energy_unit)
    values = _targets_from(_target_table(cache_dir), targets, energy_unit)[qm9_split("train", seed)]
    return values.mean(0).tolist(), values.std(0).tolist()


def _graph_settings() -> dict:
    return dict(version=_GRAPHS_VERSION, explicit_h=True, atom_dims=list(ATOM_FEATURE_DIMS),
                bond_dims=list(BOND_FEATURE_DIMS), bond_scales=list(_BOND_SCALES), loose_scale=_LOOSE_SCALE)


def _process(rows: np.ndarray, cache_dir) -> tuple[GraphStore, dict, dict]:
    """Graphs of the molecules at ``rows`` (and the target table, cached on the way), plus the
    molecules that failed: ``{row: message}``."""
    table = read_qm9_table(["Index", "SMILES", "Elements", "XYZ_Ang", "Stoichiometry"]
                           + [c for c, _ in _COLUMNS.values()])
    targets = _target_table(cache_dir, table)
    index, smiles = table["Index"].to_numpy(), table["SMILES"].to_numpy()
    elements, xyz = table["Elements"].to_numpy(), table["XYZ_Ang"].to_numpy()
    graphs, names, failed = [], [], {}
    for r in rows.tolist():
        name = f"{index[r]} ({smiles[r]})"
        try:
            g = qm9_molecule(smiles[r], _parse_elements(elements[r]), _parse_xyz(xyz[r]), name)
        except GlocalError as e:
            failed[r] = str(e)
            g = dict(inputs=np.zeros((1, len(ATOM_FEATURE_DIMS)), np.int64), edge_index=np.zeros((2, 0), np.int64),
                     edge_attr=np.zeros((0, len(BOND_FEATURE_DIMS)), np.int64), pos=np.zeros((1, 3), np.float32))
        graphs.append(g)
        names.append(smiles[r])
    return GraphStore.from_graphs(graphs, names), targets, failed


class QM9(GraphDataset):
    """QM9 molecules as graphs with 3D positions and the selected targets (see the module doc for
    the source, the graphs, the units, the split and the cache).

    Samples: ``inputs [N, 9]`` long, ``edge_index [2, E]``, ``edge_attr [E, 4]`` long, ``pos [N, 3]``
    float32 (Å), ``target [T]`` float32, ``name`` (the SMILES); ``describe(i)`` names the molecule by
    its QM9 index and SMILES.

    Args:
        split: ``'train'`` (110,000), ``'val'`` (10,000) or ``'test'`` (10,831).
        targets: names from :data:`QM9_TARGETS`, e.g. ``('gap',)``.
        energy_unit: ``'eV'`` (default), ``'meV'`` or ``'hartree'`` for the energy targets.
        seed: the split's seed (0: the documented split).
        limit: keep the first ``limit`` molecules of the split (tests, quick runs).
        cache_dir: the cache root (``<cache_dir>/qm9`` for the graphs, ``<cache_dir>/pe`` for the
            encodings; default ``~/.cache/glocal/data``).
        transforms, check, on_error, max_skips: see :class:`~glocal.modalities.graph.base.GraphDataset`.

    Attributes: ``target_names``, ``target_units``, ``target_mean`` / ``target_std`` (training split,
    see the module doc), ``data_log`` (the cache line), ``pe_log``.
    """

    cache_name = "qm9"

    def __init__(self, split: str = "train", targets: Sequence[str] = ("gap",), energy_unit: str = "eV", seed: int = 0,
                 limit: int | None = None, transforms=None, check=None, cache_dir=None, on_error: str = "error",
                 max_skips: int | None = None):
        super().__init__(transforms, check=check, cache_dir=cache_dir, on_error=on_error, max_skips=max_skips)
        self.target_names = _check_targets(targets, energy_unit)
        self.target_units = target_units(self.target_names, energy_unit)
        self.split, self.energy_unit = split, energy_unit
        self.molecules = qm9_split(split, seed)[:limit]  # rows of qm9pack's table
        self.store, self._store_rows, table, self.failed, self.data_log = self._graphs(self.molecules, limit is None,
                                                                                      cache_dir)
        values = _targets_from(table, self.target_names, energy_unit)  # [130831, T]
        train = values[qm9_split("train", seed)]
        self.target_mean, self.target_std = train.mean(0).tolist(), train.std(0).tolist()
        self.targets = values[self.molecules].astype(np.float32)  # [G, T]
        self.qm9_index = table["index"].numpy()[self.molecules]
        self._sizes = self.store.num_nodes()[self._store_rows]
        self.metainfo = dict(targets=self.target_names, units=self.target_units, split_sizes=QM9_SPLIT_SIZES)
        self._setup()

    @staticmethod
    def _graphs(rows: np.ndarray, whole_split: bool, cache_dir):
        """``(store, store row of each molecule, target table, failed, log line)``: from the file of
        all molecules when it exists; else a whole split processes (and caches) all molecules, a
        limited one only its own."""
        start = time.perf_counter()
        folder = cache_root("qm9", cache_dir)
        key = settings_key(_graph_settings())
        full = folder / f"qm9-graphs-v{_GRAPHS_VERSION}-{key}.pt"
        path = full
        if not full.is_file() and not whole_split:
            path = folder / f"qm9-graphs-v{_GRAPHS_VERSION}-{key}-rows{settings_key(dict(rows=rows.tolist()))}.pt"
        memo = _MEMO.get(str(path))
        obj = None
        if memo is not None and path.is_file() and memo[0] == path.stat().st_mtime:
            obj = memo[1]
        elif path.is_file():
            state = load_cache(path, _GRAPHS_VERSION, "QM9 graphs")
            if state is not None and state.get("settings") == _graph_settings():
                obj = (GraphStore.from_state(state["store"]), state["rows"].numpy(),
                       {int(k): v for k, v in state["failed"].items()})
                _MEMO.clear()  # one store held at a time
                _MEMO[str(path)] = (path.stat().st_mtime, obj)
        if obj is not None:
            store, stored_rows, failed = obj
            table = _target_table(cache_dir)
            what = f"cache hit ({len(rows)} molecules from {path}) in {time.perf_counter() - start:.1f} s"
        else:
            stored_rows = np.arange(QM9_NUM_MOLECULES) if path == full else rows
            store, table, failed = _process(stored_rows, cache_dir)
            save_cache(path, dict(version=_GRAPHS_VERSION, settings=_graph_settings(), store=store.state(),
                                  rows=torch.from_numpy(stored_rows.astype(np.int64)),
                                  failed={str(k): v for k, v in failed.items()}))
            what = (f"cache miss: processed {len(stored_rows)} molecules with RDKit in "
                    f"{time.perf_counter() - start:.1f} s ({len(failed)} failed) -> {path}")
        lookup = np.full(QM9_NUM_MOLECULES, -1, dtype=np.int64)
        lookup[stored_rows] = np.arange(len(stored_rows))
        line = f"QM9: graphs: {what}"
        print_log(line, logger="current", level=logging.INFO)
        return store, lookup[rows], table, {int(k): v for k, v in failed.items()}, line

    @classmethod
    def from_file(cls, source: str, check=None) -> dict:
        """One molecule of the user's, a SMILES string, as a raw sample for inference
        (``tools/infer.py``), without ``pos``: a SMILES has no 3D coordinates, so only models that
        do not read ``pos`` run on it.

        The graph has hydrogens as nodes, featurised as QM9's graphs are (in RDKit's atom order),
        checked as the dataset checks them, and is named by the SMILES. An invalid SMILES is a
        :class:`DataError` naming it."""
        graph = {k: torch.from_numpy(v) for k, v in mol_to_graph(smiles_to_mol(source, explicit_h=True, name=source),
                                                                 source).items()}
        check_graph(graph, source, **_check_settings(check, cls.__name__, cls.default_check))
        return {**graph, "name": source}

    def __len__(self) -> int:
        return len(self.molecules)

    def name_of(self, index: int) -> str:
        return f"QM9 {int(self.qm9_index[index])} ({self.store.names[self._store_rows[index]]})"

    def num_nodes(self) -> np.ndarray:
        return self._sizes

    def structure(self, index: int):
        if int(self.molecules[index]) in self.failed:
            return None
        return self.store.edges(self._store_rows[index])

    def graph(self, index: int) -> dict:
        failed = self.failed.get(int(self.molecules[index]))
        if failed is not None:
            raise DataError(failed)
        sample = self.store.sample(self._store_rows[index])
        sample["target"] = torch.from_numpy(self.targets[index].copy())  # [T]
        return sample
