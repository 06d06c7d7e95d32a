"""`cnn export`: write a trained model as ONNX or StableHLO, checked against the Flax model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnncli.commands.common import Opt, QuietOpt, fail, handled_errors


def export(
    model: Annotated[Path, typer.Argument(help="Run folder or model/ folder.", show_default=False)],
    fmt: Annotated[
        str, Opt("--format", "-f", help="onnx (needs cnn\\[export]) or stablehlo (jax.export).")
    ] = "onnx",
    out: Annotated[Path | None, Opt("--out", help="Output folder (default: MODEL/export).")] = None,
    check_images: Annotated[
        list[str] | None,
        Opt(
            "--check-images",
            help="Images (files, folders, globs) for the check (default: the run's val split).",
        ),
    ] = None,
    int8: Annotated[
        bool,
        Opt(
            "--int8",
            help="ONNX only: also quantize to int8 (calibrated on the run's training images) "
            "and write model.int8.onnx.",
        ),
    ] = False,
    max_drop: Annotated[
        float,
        Opt(
            "--max-drop",
            help="--int8: refuse (exit 1, nothing written) when val accuracy drops by more "
            "than this many points.",
        ),
    ] = 1.0,
    json_out: Annotated[bool, Opt("--json", help="Print a JSON summary on stdout.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a model for onnxruntime or jax.export; refuses one that differs from the Flax model.

    --int8 writes a quantized model.int8.onnx, refused when it loses more than --max-drop
    points of val accuracy against the float model.
    """
    with handled_errors():
        from cnncli.inference.bundle import load_bundle
        from cnncli.inference.export import export_bundle
        from cnncli.inference.export_verify import VerificationError
        from cnncli.inference.exported import FORMATS
        from cnncli.reporting.report import make_console

        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise fail(f"--format must be {' or '.join(FORMATS)}, not {fmt!r}")
        if int8 and fmt != "onnx":
            raise fail(f"--int8 quantizes ONNX models; use --format onnx, not {fmt}")
        console = make_console(to_stderr=json_out, quiet=quiet)
        bundle = load_bundle(model)
        try:
            result = export_bundle(
                bundle,
                fmt,
                out or model / "export",
                check_images,
                int8=int8,
                max_drop=max_drop,
                progress=console.print,
            )
        except VerificationError as exc:
            raise fail(str(exc), code=1) from None  # not the user's mistake: exit 1, not 2
        check = result.verification
        noise = check.images - check.real_images
        where = (
            f"{check.real_images} from {check.source} + {noise} noise"
            if check.real_images
            else f"{noise} seeded noise; the run's images were not found"
        )
        console.print(
            f"checked on {check.images} images ({where}), batch sizes {check.batch_sizes}"
        )
        console.print(
            f"max |logit diff| vs the Flax model [bold]{check.max_abs_diff:.2e}[/bold] "
            f"(limit {check.limit:.0e}); same top class on {check.argmax_agree}/{check.images}"
            + (f" ({check.ties} tied within the limit)" if check.ties else "")
        )
        if result.int8 is not None:
            score = result.int8
            console.print(score.summary())
            console.print(
                f"size {score.float_bytes / 1024:.1f} KiB float -> "
                f"{score.int8_bytes / 1024:.1f} KiB int8 "
                f"({score.int8_bytes / score.float_bytes:.0%})"
            )
        console.print(
            f"wrote [bold]{result.model_path}[/bold] ({result.size_bytes / 1024:.1f} KiB), "
            + ", ".join(p.name for p in result.files[1:])
        )
        if json_out:
            import json

            summary = {
                "format": result.format,
                "model": str(result.model_path),
                "files": [str(p) for p in result.files],
                "bytes": result.size_bytes,
                "check_images": check.images,
                "check_real_images": check.real_images,
                "max_abs_logit_diff": check.max_abs_diff,
                "argmax_agree": check.argmax_agree,
                "passed": check.passed,
            }
            if result.int8 is not None:
                summary["int8"] = result.int8.record()
            print(json.dumps(summary))
