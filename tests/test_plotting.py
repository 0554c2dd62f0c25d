"""Sample pictures on the real TerraMesh samples: composites picked by band name, legends, a saved figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataset_scripts.plotting import legend, plot_sample, render_layer, render_sentinel2
from dataset_scripts.terramind import S2L2A_BANDS, read_tile


def test_plot_sample_on_a_real_tile(terramind_dir: Path, tmp_path: Path) -> None:
    t = read_tile(terramind_dir, "282D_485L_3_3")  # Brazil coast: sea, forest, beach
    arrays = {"sentinel2": t["sentinel2_l2a"], "sentinel1": t["sentinel1"], "dem": t["dem"], "dynamic_world": t["dynamic_world"]}
    bands = {"sentinel2": list(S2L2A_BANDS), "sentinel1": ["VV", "VH"], "dem": ["elevation"], "dynamic_world": ["label"]}
    panels = {k: v for m in arrays for k, v in render_layer(m, arrays[m], bands[m]).items()}
    assert set(panels) == {"Sentinel-2 true colour", "Sentinel-2 false colour (NIR)", "Sentinel-1 VV/VH", "DEM hillshade", "Dynamic World"}
    assert all(p.shape == (224, 224, 3) and p.dtype == np.uint8 for p in panels.values())
    # bands are picked by name: reversing the file order with matching names gives the same picture
    reversed_pic = render_sentinel2(t["sentinel2_l2a"][::-1], list(S2L2A_BANDS)[::-1])
    assert np.array_equal(reversed_pic, panels["Sentinel-2 true colour"])
    # vegetation is red in the NIR false colour, water is not
    water = t["dynamic_world"][0] == 1
    trees = t["dynamic_world"][0] == 2
    red = panels["Sentinel-2 false colour (NIR)"][..., 0].astype(float)
    assert red[trees].mean() > red[water].mean() + 50
    assert [name for name, _ in legend("dynamic_world", t["dynamic_world"])] == ["water", "trees", "grass", "bare"]
    plot_sample(arrays, bands, title="Brazil coast", path=tmp_path / "sample.png")
    assert (tmp_path / "sample.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match=r"lacks bands \['B08'\]"):
        render_sentinel2(t["sentinel2_l2a"][:7], list(S2L2A_BANDS)[:7], "false")
