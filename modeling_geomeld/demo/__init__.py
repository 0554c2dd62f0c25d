"""`geomeld demo`: the release end to end on real imagery that registry packages ship (see demo.py)."""
