"""What a request carries: its body read under the size cap, split into images (multipart
parts or the raw body), and each image decoded in memory by the training decode rules.

Nothing touches the disk: the body is read into memory (never spooled to a temporary file),
multipart parts are cut out of it by python-multipart's parser, and each image is decoded
from memory by cnncli.data.decode, the code that decodes training images.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from cnncli.data.decode import Resize, decode_image
from cnncli.serving.errors import ApiError

MB = 1024 * 1024

# Pillow identifies a file by its bytes, not its name, and some of its readers hand the file
# to other programs (EPS to Ghostscript). A server only opens the formats of the image
# extensions that training reads (cnncli.data.scan.IMAGE_EXTENSIONS); MPO is how many
# phone cameras save a JPEG.
UPLOAD_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF")


@dataclass
class Upload:
    """One image of a request: a name to report it by and its bytes."""

    name: str
    data: bytes


async def read_body(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The request body, refused with 413 once it is over limit bytes.

    A Content-Length over the limit is refused before a byte is read (a client that sent
    `Expect: 100-continue`, as curl does for large files, then never uploads); a body
    without one is counted as it arrives. uvicorn reads and drops the rest of a refused
    body, so a client still sending reads the 413 rather than a connection reset.
    """
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", "Content-Length is not a number") from None
        if length > limit:
            raise _too_large(f"the upload is {length / MB:.1f} MB", limit)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise _too_large(f"the upload is over {limit / MB:g} MB", limit)
    return bytes(body)


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(
        413,
        "upload_too_large",
        f"{what}; this server accepts at most {limit / MB:g} MB per request (--max-upload-mb)",
    )


def split_images(body: bytes, content_type: str | None, max_images: int) -> list[Upload]:
    """The images of a request: every multipart part with a filename, or the whole body.

    400 when there is none or the multipart body is malformed; 413 over max_images.
    """
    from python_multipart.multipart import parse_options_header

    kind, params = parse_options_header(content_type or "")
    if kind == b"multipart/form-data":
        uploads = _multipart_files(body, params.get(b"boundary", b""))
    else:  # any other type (image/*, curl --data-binary's default, none): one image
        uploads = [Upload("body", body)] if body else []
    if not uploads:
        raise ApiError(
            400,
            "no_image",
            "no image in the request: send files as multipart/form-data fields with a "
            "filename (curl -F image=@photo.jpg), or the image bytes as the body",
        )
    if len(uploads) > max_images:
        raise ApiError(
            413,
            "too_many_images",
            f"{len(uploads)} images in one request; this server takes at most {max_images} "
            "(--max-images)",
        )
    return uploads


def _multipart_files(body: bytes, boundary: bytes) -> list[Upload]:
    """Cut the file parts out of a multipart/form-data body, in memory."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    if not boundary:
        raise ApiError(400, "bad_multipart", "multipart/form-data without a boundary")
    files: list[Upload] = []
    part = {"headers": {}, "field": b"", "value": b"", "data": bytearray()}

    def on_part_begin() -> None:
        part.update(headers={}, field=b"", value=b"", data=bytearray())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"] = part["value"] = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part["data"] += data[start:end]

    def on_part_end() -> None:
        _, options = parse_options_header(part["headers"].get(b"content-disposition", b""))
        filename = options.get(b"filename")
        if filename is not None:
            name = filename.decode("utf-8", "replace") or f"image {len(files) + 1}"
            files.append(Upload(name, bytes(part["data"])))

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise ApiError(
            400, "bad_multipart", f"malformed multipart/form-data body ({exc})"
        ) from None
    return files


def decode_upload(data: bytes, name: str, resize: Resize, channels: int) -> np.ndarray:
    """Uploaded bytes -> uint8 (H, W, channels) by training's decode path (decode_image):
    size guard, JPEG draft, EXIF orientation, colour modes, resize. A failure raises
    DecodeError, whose kind is the server's error code."""
    return decode_image(name, resize, channels, data=data, formats=UPLOAD_FORMATS)
