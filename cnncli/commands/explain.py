"""`cnn explain`: draw what a trained model sees in one image (filters, feature maps, Grad-CAM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import Opt, QuietOpt, fail, handled_errors

FILTERS_PNG = "filters.png"
FEATURE_MAPS_PNG = "feature_maps.png"
GRADCAM_PNG = "gradcam.png"


def default_out_dir(bundle_path: Path, image: Path) -> Path:
    """RUN/explain/<image stem>/ inside a run folder; ./explain/<image stem>/ for a bare model."""
    run_dir = bundle_path.parent
    base = run_dir if (run_dir / "run.json").is_file() else Path()
    return base / "explain" / image.stem


def explain(
    model: Annotated[
        Path,
        typer.Argument(
            help="A run folder or its model/ folder.", metavar="RUN", show_default=False
        ),
    ],
    image: Annotated[
        Path, typer.Argument(help="The image to explain.", metavar="IMAGE", show_default=False)
    ],
    class_name: Annotated[
        str | None,
        Opt("--class", help="Class the Grad-CAM explains (default: the predicted class)."),
    ] = None,
    out: Annotated[
        Path | None,
        Opt("--out", help="Folder for the PNGs (default: RUN/explain/<image stem>)."),
    ] = None,
    max_channels: Annotated[
        int, Opt("--max-channels", help="Feature-map channels drawn per conv layer.")
    ] = 16,
    json_out: Annotated[
        bool, Opt("--json", help="Print the prediction and file paths as JSON on stdout.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Draw the first layer's filters, each conv layer's feature maps and a Grad-CAM heatmap."""
    with handled_errors():
        import json

        from rich.markup import escape

        from cnncli.charts.plots import plot_feature_maps, plot_filters, plot_heatmap_overlay
        from cnncli.data.decode import DecodeError, decode_image
        from cnncli.inference.bundle import load_bundle
        from cnncli.inference.explain import explain_image
        from cnncli.reporting.report import make_console

        console = make_console(to_stderr=json_out, quiet=quiet)
        if max_channels < 1:
            raise fail("--max-channels must be >= 1")
        bundle = load_bundle(model)
        class_index = None
        if class_name is not None:
            if class_name not in bundle.classes:
                raise fail(
                    f"--class {class_name!r} is not a class of this model "
                    f"(classes: {', '.join(bundle.classes)})"
                )
            class_index = bundle.classes.index(class_name)
        try:
            pixels = decode_image(image, bundle.resize, bundle.channels)
        except DecodeError as exc:
            raise fail(str(exc)) from None
        result = explain_image(
            bundle.params, bundle.stats, bundle.model, pixels, class_index, bundle.multi_label
        )

        out_dir = out or default_out_dir(bundle.path, image)
        out_dir.mkdir(parents=True, exist_ok=True)
        if bundle.multi_label:
            _explain_labels(
                console, bundle, image, pixels, result, out_dir, max_channels, json_out, class_index
            )
            return
        predicted = bundle.classes[result.predicted]
        explained = bundle.classes[result.class_index]
        files = {
            "filters": out_dir / FILTERS_PNG,
            "feature_maps": out_dir / FEATURE_MAPS_PNG,
            "gradcam": out_dir / GRADCAM_PNG,
        }
        plot_filters(result.filters, files["filters"])
        plot_feature_maps(
            result.feature_maps, result.layer_names, files["feature_maps"], max_channels
        )
        plot_heatmap_overlay(
            pixels,
            result.cam,
            files["gradcam"],
            title=f"Grad-CAM for {explained} ({100 * result.probs[result.class_index]:.1f}%)",
        )

        confidence = float(result.probs[result.predicted])
        console.print(f"predicted: [bold]{escape(predicted)}[/bold] ({100 * confidence:.1f}%)")
        if result.class_index != result.predicted:
            p = float(result.probs[result.class_index])
            console.print(f"Grad-CAM for class {escape(explained)} ({100 * p:.1f}%)")
        for path in files.values():
            console.print(f"wrote {escape(str(path))}")
        if json_out:
            summary = {
                "image": str(image),
                "model": str(bundle.path),
                "predicted": predicted,
                "confidence": confidence,
                "explained_class": explained,
                "probabilities": dict(zip(bundle.classes, map(float, result.probs), strict=True)),
                "files": {k: str(v) for k, v in files.items()},
            }
            print(json.dumps(summary, ensure_ascii=False))


def _explain_labels(
    console, bundle, image, pixels, result, out_dir, max_channels, json_out, class_index
):
    """Multi-label: filters, feature maps, and one Grad-CAM per label in the predicted set
    (or for --class), written as gradcam_<label>.png."""
    import json

    from rich.markup import escape

    from cnncli.charts.plots import plot_feature_maps, plot_filters, plot_heatmap_overlay
    from cnncli.inference.explain import label_cams
    from cnncli.inference.predict import label_set
    from cnncli.safepath import safe_dirname

    found = label_set(result.probs, bundle.classes, bundle.thresholds)
    predicted = [bundle.classes.index(name) for name, _ in found]
    if class_index is not None:  # --class NAME
        indices = [class_index]
    else:
        indices = predicted or [result.predicted]  # no label above threshold: the likeliest
    files = {"filters": out_dir / FILTERS_PNG, "feature_maps": out_dir / FEATURE_MAPS_PNG}
    plot_filters(result.filters, files["filters"])
    plot_feature_maps(result.feature_maps, result.layer_names, files["feature_maps"], max_channels)
    cams = label_cams(bundle.params, bundle.model, result, indices)
    gradcams = {}
    for index in indices:
        name = bundle.classes[index]
        path = out_dir / f"gradcam_{safe_dirname(name)}.png"
        title = f"Grad-CAM for {name} ({100 * result.probs[index]:.1f}%)"
        plot_heatmap_overlay(pixels, cams[index], path, title=title)
        gradcams[name] = path
    shown = ", ".join(f"{escape(n)} ({100 * p:.1f}%)" for n, p in found) or "(none)"
    console.print(f"predicted labels: [bold]{shown}[/bold]")
    for path in [*files.values(), *gradcams.values()]:
        console.print(f"wrote {escape(str(path))}")
    if json_out:
        summary = {
            "image": str(image),
            "model": str(bundle.path),
            "multi_label": True,
            "predicted": [n for n, _ in found],
            "thresholds": dict(zip(bundle.classes, bundle.thresholds, strict=True)),
            "probabilities": dict(zip(bundle.classes, map(float, result.probs), strict=True)),
            "files": {
                **{k: str(v) for k, v in files.items()},
                "gradcam": {k: str(v) for k, v in gradcams.items()},
            },
        }
        print(json.dumps(summary, ensure_ascii=False))
