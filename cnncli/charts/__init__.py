"""Numbers drawn as pictures: matplotlib PNGs (curves, confusion matrices, image grids,
filters, Grad-CAM overlays) and small inline SVG charts. Knows nothing of runs: training
draws its curves as it goes, so charts sit below it."""
