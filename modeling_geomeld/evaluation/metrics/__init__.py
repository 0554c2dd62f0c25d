"""`evaluate` metric modules of our own, one folder each; load them with
`modeling_geomeld.evaluation.load_metric(name)` (a thin `evaluate.load(<folder>)`, offline)."""
