"""ml_assets: a reliability-first ML pipeline as a Dagster asset graph."""
