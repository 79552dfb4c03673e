"""Downloading large files that survive dropped connections: resumable, size- and checksum-checked.

`fetch(url, dest)` downloads through ``<dest>.part``, resuming with HTTP Range requests (and
starting over when a server ignores them), checks the size and SHA-256 of what arrived, and only
then renames it into place. An unreachable host is reported at once as `HostUnreachableError`,
so the caller can say how to bring the file by other means.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from actionrec import __version__
from actionrec.errors import DownloadError, HostUnreachableError
from actionrec.files import write_text

log = logging.getLogger(__name__)

Progress = Callable[[int, "int | None"], None]  # (bytes done, total bytes or None when unknown)

_CHUNK = 1 << 20
_MAX_STALLED_ATTEMPTS = 4  # consecutive attempts that brought no new byte


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download `url` to `dest` through ``<dest>.part``, resuming it with HTTP Range requests.

    The file is renamed to `dest` only once complete and verified: its size against `size` (or
    the size the server announced) and its SHA-256 against `sha256`. Without `sha256`, the digest
    of what arrived is written to ``<dest>.sha256`` for later checks.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    transfer = _Transfer(url, dest, size, sha256, progress, timeout)
    transfer.run()
    return dest


class _Transfer:
    """One file's download: the state that survives dropped connections and retries."""

    def __init__(self, url: str, dest: Path, size: int | None, sha256: str | None,
                 progress: Progress | None, timeout: float) -> None:
        self.url, self.dest, self.size, self.sha256 = url, dest, size, sha256
        self.progress, self.timeout = progress, timeout
        self.part = dest.with_name(dest.name + ".part")
        self.host = urllib.parse.urlsplit(url).hostname or url
        self.total = size  # as announced by the server once known
        self.tls_context: ssl.SSLContext | None = None
        self.use_range = True
        self.done, self.hasher = self._existing_part()

    def _existing_part(self) -> tuple[int, hashlib._Hash]:
        hasher = hashlib.sha256()
        if not self.part.is_file():
            return 0, hasher
        with self.part.open("rb") as partial:
            while chunk := partial.read(_CHUNK):
                hasher.update(chunk)
        return self.part.stat().st_size, hasher

    def _restart(self, why: str) -> None:
        log.info("%s: %s; downloading %s from the start", self.url, why, self.dest.name)
        self.part.unlink(missing_ok=True)
        self.done, self.hasher = 0, hashlib.sha256()

    def run(self) -> None:
        stalled = 0
        attempts = 0
        while not self._complete():
            attempts += 1
            before = self.done
            try:
                if not self._attempt():
                    continue  # the answer did not fit the partial file, which was discarded
                if not self._complete():
                    raise ConnectionError(f"the connection closed after {self.done:,} of {self.total:,} bytes")
            except urllib.error.HTTPError as exc:
                self._http_error(exc)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                if isinstance(reason, ssl.SSLCertVerificationError):
                    self._certificate_failed(reason)
                    continue
                connect_failed = isinstance(exc, urllib.error.URLError)
                if connect_failed and attempts == 1:
                    raise HostUnreachableError(
                        f"This machine can't reach {self.host} to download {self.dest.name} ({_describe(reason)})."
                    ) from None
                stalled = 0 if self.done > before else stalled + 1
                if stalled >= _MAX_STALLED_ATTEMPTS:
                    raise DownloadError(
                        f"Downloading {self.url} failed after {self.done:,} bytes ({_describe(reason)}). "
                        f"Run the download again to resume from {self.part}."
                    ) from None
                log.info("%s: %s; resuming at byte %d", self.url, _describe(reason), self.done)
                time.sleep(0.5 * stalled)
        self._finish()

    def _complete(self) -> bool:
        return self.total is not None and self.done >= self.total

    def _attempt(self) -> bool:
        """One request; False when its answer could not be used and the download starts over."""
        headers = {"User-Agent": f"actionrec/{__version__}", "Accept-Encoding": "identity"}
        if self.done and self.use_range:
            headers["Range"] = f"bytes={self.done}-"
        request = urllib.request.Request(self.url, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout, context=self.tls_context) as response:
            if not self._accept(response):
                return False
            self._report()
            with self.part.open("ab") as out:
                while chunk := response.read(_CHUNK):
                    if self.total is not None and self.done + len(chunk) > self.total:
                        self.part.unlink(missing_ok=True)
                        raise DownloadError(f"{self.url} sent more than the expected {self.total:,} bytes; "
                                            "the file on the server is not the expected one.")
                    out.write(chunk)
                    self.hasher.update(chunk)
                    self.done += len(chunk)
                    self._report()
            if self.total is None:  # no length announced: the end of the stream is the end of the file
                self.total = self.done
        return True

    def _accept(self, response: http.client.HTTPResponse) -> bool:
        """Check the response against what is on disk; False when the body must not be used."""
        if response.status == 206:
            match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
            if not match or int(match[1]) != self.done:
                self.use_range = False
                self._restart("the server answered the Range request with another range")
                return False
            announced = None if match[3] == "*" else int(match[3])
        else:
            if self.done:
                self._restart("the server ignores Range requests")
            length = response.headers.get("Content-Length")
            announced = int(length) if length and length.isdigit() else None
        if announced is not None:
            if self.size is not None and announced != self.size:
                self.part.unlink(missing_ok=True)
                raise DownloadError(
                    f"{self.url} is {announced:,} bytes on the server, but {self.dest.name} should be "
                    f"{self.size:,} bytes: the server holds another file. Nothing was saved."
                )
            self.total = announced
        return True

    def _http_error(self, exc: urllib.error.HTTPError) -> None:
        if exc.code == 416 and self.done:
            match = re.fullmatch(r"bytes \*/(\d+)", (exc.headers.get("Content-Range") or "").strip())
            if match and int(match[1]) == self.done:
                self.total = self.done  # the partial file was already complete
                return
            self._restart("the server refused to resume")
            return
        raise DownloadError(f"{self.url}: the server answered HTTP {exc.code} {exc.reason}. "
                            "Check the URL, or download the file by hand and pass it as a local file.") from None

    def _certificate_failed(self, reason: ssl.SSLCertVerificationError) -> None:
        # The official server has long sent an incomplete certificate chain. With a published
        # SHA-256 the content is verified anyway, so the certificate adds nothing.
        if self.sha256 is None or self.tls_context is not None:
            raise DownloadError(
                f"The TLS certificate of {self.host} could not be verified ({reason.verify_message}). "
                f"Download {self.url} with a browser and pass it as a local file."
            ) from None
        log.warning("%s: certificate not verifiable (%s); relying on the published SHA-256 instead",
                    self.host, reason.verify_message)
        self.tls_context = ssl._create_unverified_context()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)

    def _finish(self) -> None:
        if self.size is not None and self.done != self.size:
            self.part.unlink(missing_ok=True)
            raise DownloadError(f"{self.url}: received {self.done:,} bytes, expected {self.size:,}. "
                                "The partial file was deleted; run the download again.")
        digest = self.hasher.hexdigest()
        if self.sha256 is not None and digest != self.sha256.lower():
            self.part.unlink(missing_ok=True)
            raise DownloadError(
                f"{self.url}: the downloaded file's SHA-256 is {digest}, expected {self.sha256}. It is "
                "damaged or not the published file and was deleted; run the download again."
            )
        if self.sha256 is None:
            write_text(self.dest.with_name(self.dest.name + ".sha256"), f"{digest}  {self.dest.name}\n")
        os.replace(self.part, self.dest)


def _describe(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    return str(reason) or type(reason).__name__
