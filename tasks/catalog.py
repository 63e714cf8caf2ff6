"""Everything glocal.tasks offers to configs, registered explicitly in one place."""
