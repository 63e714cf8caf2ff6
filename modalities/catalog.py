"""Everything glocal.modalities offers to configs, registered explicitly in one place."""
