"""UCF101: official splits on a fake release, validation, extraction, and resumable downloads
from a local HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest

from actionrec.datasets import DatasetError, clip_group, download, load_dataset, ucf101
from actionrec.errors import DownloadError, ExtractionError, HostUnreachableError
from actionrec.testing.ucf101 import make_fake_ucf101

CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]


def write_placeholder(path: Path, class_name: str) -> None:
    path.write_bytes(b"placeholder clip of " + class_name.encode())


@pytest.fixture
def fake_release(tmp_path: Path) -> Path:
    return make_fake_ucf101(tmp_path / "ucf", CLASSES, groups=25, clips_per_group=2,
                                   write_clip=write_placeholder)


def group_number(path: Path) -> int:
    return int(re.search(r"_g(\d+)_", path.name)[1])


# --------------------------------------------------------------------------- official splits


@pytest.mark.parametrize("split", [1, 2, 3])
def test_load_split_follows_the_official_group_rule(fake_release: Path, split: int) -> None:
    dataset = ucf101.load_split(fake_release, split)

    assert dataset.classes == CLASSES
    assert dataset.description == f"UCF101 official split {split}"
    assert dataset.warnings == []
    assert len(dataset.val) == 3 * 7 * 2 and len(dataset.train) == 3 * 18 * 2
    assert {group_number(s.path) for s in dataset.val} == set(ucf101.TEST_GROUPS[split])
    for label in range(len(CLASSES)):
        train_groups = {clip_group(s.path) for s in dataset.train if s.label == label}
        val_groups = {clip_group(s.path) for s in dataset.val if s.label == label}
        assert train_groups and val_groups and not train_groups & val_groups
    handstand = [s for s in dataset.train + dataset.val if s.label == 1]
    assert len(handstand) == 50
    assert all(s.path.parent.name == "HandstandPushups" and s.path.name.startswith("v_HandStandPushups_g")
               and s.path.is_file() for s in handstand)


def test_fake_release_has_official_file_formats(fake_release: Path) -> None:
    lists = fake_release / "ucfTrainTestlist"
    assert (lists / "classInd.txt").read_bytes() == b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n"
    train = (lists / "trainlist01.txt").read_bytes().split(b"\r\n")
    test = (lists / "testlist01.txt").read_bytes().split(b"\r\n")
    assert b"HandstandPushups/v_HandStandPushups_g08_c01.avi 2" in train
    assert b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi" in test
    assert (fake_release / "UCF-101" / "YoYo" / "v_YoYo_g25_c02.avi").is_file()


def test_load_dataset_with_kind_ucf101_delegates(fake_release: Path) -> None:
    dataset = load_dataset(fake_release, kind="ucf101", split=2)
    assert dataset.description == "UCF101 official split 2"


def test_split_files_may_spell_the_handstand_class_either_way(fake_release: Path) -> None:
    lists = fake_release / "ucfTrainTestlist"
    train = lists / "trainlist01.txt"
    train.write_bytes(train.read_bytes().replace(b"v_HandStandPushups", b"v_HandstandPushups"))
    test = lists / "testlist01.txt"
    test.write_bytes(test.read_bytes().replace(b"HandstandPushups/", b"handstandpushups/") + b"\r\n\r\n")

    dataset = ucf101.load_split(fake_release, 1)

    assert dataset.warnings == []
    assert sum(s.label == 1 for s in dataset.train) == 36 and sum(s.label == 1 for s in dataset.val) == 14
    assert all(s.path.is_file() for s in dataset.train + dataset.val)


def test_unix_line_endings_and_trailing_blank_lines_also_work(fake_release: Path) -> None:
    for path in (fake_release / "ucfTrainTestlist").iterdir():
        path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n") + b"\n\n   \n")
    dataset = ucf101.load_split(fake_release, 3)
    assert len(dataset.train) == 108 and len(dataset.val) == 42


def test_a_group_on_both_sides_is_an_error(fake_release: Path) -> None:
    train = fake_release / "ucfTrainTestlist" / "trainlist01.txt"
    train.write_bytes(train.read_bytes() + b"YoYo/v_YoYo_g03_c01.avi 3\r\n")
    with pytest.raises(DatasetError, match=r"split 1: 1 clip group\(s\) are in both trainlist01.txt and "
                                           r"testlist01.txt \(e.g. yoyo_g03"):
        ucf101.load_split(fake_release, 1)
    ucf101.load_split(fake_release, 2)  # groups 1-7 are on the training side there anyway


def test_a_label_that_disagrees_with_classind_is_an_error(fake_release: Path) -> None:
    train = fake_release / "ucfTrainTestlist" / "trainlist02.txt"
    train.write_bytes(train.read_bytes().replace(b"YoYo/v_YoYo_g01_c01.avi 3", b"YoYo/v_YoYo_g01_c01.avi 1"))
    with pytest.raises(DatasetError, match=r"trainlist02.txt, line \d+: YoYo/v_YoYo_g01_c01.avi is labelled 1"):
        ucf101.load_split(fake_release, 2)


def test_missing_clips_are_left_out_with_a_warning(fake_release: Path) -> None:
    (fake_release / "UCF-101" / "YoYo" / "v_YoYo_g02_c01.avi").unlink()
    dataset = ucf101.load_split(fake_release, 1)
    assert len(dataset.val) == 41
    assert len(dataset.warnings) == 1 and "testlist01.txt: 1 listed clip(s) are missing" in dataset.warnings[0]


def test_bad_split_number_and_incomplete_layout_are_errors(fake_release: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"splits 1, 2 and 3, not 4"):
        ucf101.load_split(fake_release, 4)
    with pytest.raises(DatasetError, match=r"passed UCF-101/ itself: pass its parent folder"):
        ucf101.load_split(fake_release / "UCF-101", 1)
    shutil.rmtree(fake_release / "ucfTrainTestlist")
    with pytest.raises(DatasetError, match=r"ucfTrainTestlist: missing. Unpack "
                                           r"UCF101TrainTestSplits-RecognitionTask.zip"):
        ucf101.load_split(fake_release, 1)


# --------------------------------------------------------------------------- validation


@pytest.fixture
def real_clip_release(tmp_path: Path) -> Path:
    return make_fake_ucf101(tmp_path / "ucf", ["Jump", "HandstandPushups"], groups=8, clips_per_group=1)


def test_default_clips_are_small_real_videos(real_clip_release: Path) -> None:
    path = real_clip_release / "UCF-101" / "Jump" / "v_Jump_g01_c01.avi"
    with av.open(str(path)) as container:
        assert container.format.name == "avi"
        frames = list(container.decode(video=0))
    assert len(frames) == 8 and frames[0].width == 64
    pixels = frames[0].to_ndarray(format="rgb24")
    assert pixels.std(axis=(0, 1)).max() < 3  # one solid colour


def test_validate_accepts_a_complete_release(real_clip_release: Path) -> None:
    report = ucf101.validate(real_clip_release)
    assert report.ok, report.summary()
    assert report.classes == ["HandstandPushups", "Jump"] and report.num_videos == 16
    assert "OK" in report.summary().splitlines()[0]


def test_validate_reports_missing_empty_unreadable_and_unlisted_clips(real_clip_release: Path) -> None:
    videos = real_clip_release / "UCF-101"
    (videos / "Jump" / "v_Jump_g01_c01.avi").unlink()
    (videos / "Jump" / "v_Jump_g02_c01.avi").write_bytes(b"")
    (videos / "HandstandPushups" / "v_HandStandPushups_g03_c01.avi").write_bytes(b"RIFF, but not a video" * 10)
    shutil.copy(videos / "Jump" / "v_Jump_g04_c01.avi", videos / "Jump" / "v_Jump_g30_c01.avi")

    checked = []
    report = ucf101.validate(real_clip_release, progress=lambda done, total: checked.append((done, total)))

    assert not report.ok
    assert report.missing == ["Jump/v_Jump_g01_c01.avi"]
    assert report.unlisted == ["Jump/v_Jump_g30_c01.avi"]
    assert [entry.split(" (")[0] for entry in report.unreadable] == [
        "HandstandPushups/v_HandStandPushups_g03_c01.avi", "Jump/v_Jump_g02_c01.avi"]
    assert "(0 bytes)" in report.unreadable[1] and "does not open" in report.unreadable[0]
    assert len(report.problems) == 3
    assert checked[-1] == (16, 16)
    summary = report.summary()
    assert "3 problem(s)" in summary and "listed in a split file but missing: 1" in summary


def test_validate_reports_a_missing_layout(tmp_path: Path) -> None:
    report = ucf101.validate(tmp_path)
    assert not report.ok
    assert any("UCF-101 is missing" in p for p in report.problems)
    assert any("ucfTrainTestlist is missing" in p for p in report.problems)


def test_validate_reports_a_missing_split_file(fake_release: Path) -> None:
    (fake_release / "ucfTrainTestlist" / "testlist03.txt").unlink()
    report = ucf101.validate(fake_release, open_videos=False)
    assert [p for p in report.problems if "testlist03.txt: missing" in p]


# --------------------------------------------------------------------------- extraction


def stored_rar4(files: dict[str, bytes]) -> bytes:
    """A minimal RAR 4 archive that stores `files` uncompressed (what unar and unrar read)."""

    def block(kind: int, flags: int, body: bytes, data: bytes = b"") -> bytes:
        head = struct.pack("<BHH", kind, flags, 7 + len(body)) + body
        return struct.pack("<H", zlib.crc32(head) & 0xFFFF) + head + data

    archive = b"Rar!\x1a\x07\x00" + block(0x73, 0, bytes(6))
    for name, data in files.items():
        encoded = name.replace("/", "\\").encode()
        dos_time = (2025 - 1980) << 25 | 1 << 21 | 1 << 16
        body = struct.pack("<IIBIIBBHI", len(data), len(data), 2, zlib.crc32(data), dos_time, 20, 0x30,
                           len(encoded), 0x20) + encoded
        archive += block(0x74, 0x8000, body, data)
    return archive + block(0x7B, 0x4000, b"")


def splits_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ucfTrainTestlist/classInd.txt", "1 Jump\r\n")
        for split in (1, 2, 3):
            archive.writestr(f"ucfTrainTestlist/trainlist0{split}.txt", "Jump/v_Jump_g08_c01.avi 1\r\n")
            archive.writestr(f"ucfTrainTestlist/testlist0{split}.txt", "Jump/v_Jump_g01_c01.avi\r\n")
    return path


def fake_tool(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(f"#!{sys.executable}\nimport sys, pathlib\nargs = sys.argv[1:]\n{body}\n")
    script.chmod(0o755)


def test_extract_splits_flattens_the_zip_into_ucftraintestlist(tmp_path: Path) -> None:
    target = ucf101.extract_splits(splits_zip(tmp_path / "splits.zip"), tmp_path / "root")
    assert target == tmp_path / "root" / "ucfTrainTestlist"
    assert sorted(p.name for p in target.iterdir()) == [
        "classInd.txt", "testlist01.txt", "testlist02.txt", "testlist03.txt",
        "trainlist01.txt", "trainlist02.txt", "trainlist03.txt"]


def test_extract_without_a_rar_tool_names_the_install_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty_bin"))
    (tmp_path / "UCF101.rar").write_bytes(stored_rar4({"UCF-101/Jump/v_Jump_g01_c01.avi": b"x"}))
    splits_zip(tmp_path / "UCF101TrainTestSplits-RecognitionTask.zip")
    with pytest.raises(ExtractionError, match=r"Install it with: sudo apt-get install unar"):
        ucf101.extract(tmp_path)
    assert (tmp_path / "ucfTrainTestlist" / "classInd.txt").is_file()
    assert not (tmp_path / "UCF-101").exists()


def test_extract_runs_the_tool_into_a_staging_folder(tmp_path: Path, monkeypatch) -> None:
    fake_tool(tmp_path / "bin", "unar", (
        "out = pathlib.Path(args[args.index('-output-directory') + 1])\n"
        "(out / 'UCF-101' / 'Jump').mkdir(parents=True)\n"
        "(out / 'UCF-101' / 'Jump' / 'v_Jump_g01_c01.avi').write_bytes(b'clip')"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    archive = tmp_path / "downloads" / "UCF101.rar"
    archive.parent.mkdir()
    archive.write_bytes(b"stand-in")
    root = tmp_path / "root"
    ucf101.extract(root, archive=archive, splits=splits_zip(tmp_path / "splits.zip"))
    assert (root / "UCF-101" / "Jump" / "v_Jump_g01_c01.avi").read_bytes() == b"clip"
    assert sorted(p.name for p in root.iterdir()) == ["UCF-101", "ucfTrainTestlist"]


def test_a_failing_tool_leaves_no_half_extracted_folder(tmp_path: Path, monkeypatch) -> None:
    fake_tool(tmp_path / "bin", "unar", (
        "out = pathlib.Path(args[args.index('-output-directory') + 1])\n"
        "(out / 'UCF-101').mkdir()\n"
        "print('Wrong checksum'); sys.exit(1)"))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    (tmp_path / "UCF101.rar").write_bytes(b"stand-in")
    with pytest.raises(ExtractionError, match=r"unar failed \(exit code 1\): Wrong checksum"):
        ucf101.extract_videos(tmp_path / "UCF101.rar", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["UCF101.rar", "bin"]


@pytest.mark.skipif(ucf101.find_rar_tool() is None, reason="no RAR extractor installed (apt-get install unar)")
def test_extract_a_real_rar_archive(tmp_path: Path) -> None:
    clips = {"UCF-101/Jump/v_Jump_g01_c01.avi": b"jump" * 100, "UCF-101/Run/v_Run_g01_c01.avi": b"run" * 50}
    (tmp_path / "UCF101.rar").write_bytes(stored_rar4(clips))
    ucf101.extract_videos(tmp_path / "UCF101.rar", tmp_path)
    for name, data in clips.items():
        assert (tmp_path / name).read_bytes() == data


# --------------------------------------------------------------------------- download


PAYLOAD = random.Random(0).randbytes(3 * 1024 * 1024 + 17)
SPLITS_PAYLOAD = b"PK fake splits zip " * 100


@dataclass
class ServerState:
    drop_first: bool = False  # the first answer stops halfway and the connection is closed
    ignore_range: bool = False
    ranges: list[str | None] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    state: ServerState
    files = {"/UCF101.rar": PAYLOAD, "/splits.zip": SPLITS_PAYLOAD}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        requested = self.headers.get("Range")
        self.state.ranges.append(requested)
        start = 0
        if requested and not self.state.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested)[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        end = len(body) // 2 if self.state.drop_first and len(self.state.ranges) == 1 else len(body)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # clients may give up on an answer
            self.wfile.write(body[start:end])
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_fetches_both_files_and_records_their_sha256(server, tmp_path: Path) -> None:
    url, _ = server
    progress = []
    root = ucf101.download(tmp_path, archive_url=f"{url}/UCF101.rar", splits_url=f"{url}/splits.zip",
                           progress=lambda done, total: progress.append((done, total)), timeout=5)
    assert root == tmp_path
    assert (tmp_path / "UCF101.rar").read_bytes() == PAYLOAD
    assert (tmp_path / "UCF101TrainTestSplits-RecognitionTask.zip").read_bytes() == SPLITS_PAYLOAD
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    assert (tmp_path / "UCF101.rar.sha256").read_text() == f"{digest}  UCF101.rar\n"
    assert not list(tmp_path.glob("*.part"))
    assert progress[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert (len(SPLITS_PAYLOAD), len(SPLITS_PAYLOAD)) in progress


def test_download_keeps_files_that_are_already_there(server, tmp_path: Path) -> None:
    url, state = server
    (tmp_path / "UCF101.rar").write_bytes(b"placed here by hand")
    ucf101.download(tmp_path, archive_url=f"{url}/UCF101.rar", splits_url=f"{url}/splits.zip", timeout=5)
    assert (tmp_path / "UCF101.rar").read_bytes() == b"placed here by hand"
    assert len(state.ranges) == 1  # only the splits zip was requested


def test_an_interrupted_transfer_resumes_with_a_range_request(server, tmp_path: Path) -> None:
    url, state = server
    state.drop_first = True
    dest = download.fetch(f"{url}/UCF101.rar", tmp_path / "UCF101.rar", sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                        timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert len(state.ranges) == 2 and state.ranges[0] is None
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", state.ranges[1])[1])
    assert 0 < resumed_at <= len(PAYLOAD) // 2


def test_a_partial_file_from_an_earlier_run_is_resumed(server, tmp_path: Path) -> None:
    url, state = server
    (tmp_path / "UCF101.rar.part").write_bytes(PAYLOAD[:1_000_000])
    dest = download.fetch(f"{url}/UCF101.rar", tmp_path / "UCF101.rar", size=len(PAYLOAD),
                        sha256=hashlib.sha256(PAYLOAD).hexdigest(), timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert state.ranges == ["bytes=1000000-"]


def test_a_server_that_ignores_range_makes_the_download_start_over(server, tmp_path: Path) -> None:
    url, state = server
    state.ignore_range = True
    (tmp_path / "UCF101.rar.part").write_bytes(b"stale bytes from another file")
    dest = download.fetch(f"{url}/UCF101.rar", tmp_path / "UCF101.rar", timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert state.ranges == ["bytes=29-"]


def test_a_checksum_mismatch_leaves_no_file(server, tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(DownloadError, match=r"SHA-256 is [0-9a-f]{64}, expected 0000"):
        download.fetch(f"{url}/UCF101.rar", tmp_path / "UCF101.rar", sha256="0" * 64, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_a_size_mismatch_leaves_no_file(server, tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(DownloadError, match=r"is 3,145,745 bytes on the server, but UCF101.rar should be"):
        download.fetch(f"{url}/UCF101.rar", tmp_path / "UCF101.rar", size=len(PAYLOAD) + 1, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_http_errors_are_reported(server, tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(DownloadError, match=r"HTTP 404"):
        download.fetch(f"{url}/nothing.rar", tmp_path / "nothing.rar", timeout=5)


def test_an_unreachable_server_says_how_to_use_local_files(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(HostUnreachableError) as error:
        ucf101.download(tmp_path, archive_url=f"{url}/UCF101.rar", splits_url=f"{url}/splits.zip", timeout=5)
    message = str(error.value)
    assert "can't reach 127.0.0.1" in message and "connection refused" in message
    assert "--archive PATH --splits PATH" in message and str(tmp_path) in message
    assert isinstance(error.value, DownloadError)
    assert not list(tmp_path.glob("*.rar*"))


def test_official_files_are_pinned_to_their_published_size_and_sha256() -> None:
    archive = ucf101.KNOWN_FILES[ucf101.ARCHIVE_URL]
    splits = ucf101.KNOWN_FILES[ucf101.SPLITS_URL]
    assert archive.size == 6_932_971_618 and splits.size == 113_943
    assert all(re.fullmatch(r"[0-9a-f]{64}", known.sha256) for known in (archive, splits))


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server whose certificate no client trusts, like a server with a broken chain."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl program is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    handler = type("Handler", (_Handler,), {"state": ServerState()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_unverifiable_certificate_is_accepted_only_when_a_checksum_vouches_for_the_file(
    https_server: str, tmp_path: Path
) -> None:
    with pytest.raises(DownloadError, match=r"TLS certificate of 127.0.0.1 could not be verified"):
        download.fetch(f"{https_server}/UCF101.rar", tmp_path / "unchecked.rar", timeout=5)
    assert not (tmp_path / "unchecked.rar").exists()

    dest = download.fetch(f"{https_server}/UCF101.rar", tmp_path / "UCF101.rar",
                        sha256=hashlib.sha256(PAYLOAD).hexdigest(), timeout=5)
    assert dest.read_bytes() == PAYLOAD
