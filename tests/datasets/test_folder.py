"""Folder-per-class datasets: listing, the group-aware split, list files and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from actionrec.datasets import DatasetError, Sample, clip_group, load_dataset
from actionrec.datasets.folder import validation_group_count


def add_videos(root: Path, class_name: str, names: list[str]) -> list[Path]:
    folder = root / class_name
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        path.write_bytes(b"not decoded by the listing code")
        paths.append(path)
    return paths


def ucf_names(class_name: str, groups: int, clips: int) -> list[str]:
    return [f"v_{class_name}_g{g:02d}_c{c:02d}.avi" for g in range(1, groups + 1) for c in range(1, clips + 1)]


def sides(split) -> dict[Path, str]:
    return {**{s.path: "train" for s in split.train}, **{s.path: "val" for s in split.val}}


def test_lists_classes_sorted_with_case_insensitive_extensions_and_hidden_files_ignored(tmp_path: Path) -> None:
    add_videos(tmp_path, "wave", ["a.MP4", "b.mov", "c.webm", "d.txt", ".e.mp4"] + [f"x{i}.avi" for i in range(5)])
    add_videos(tmp_path, "clap", [f"clip{i}.mkv" for i in range(6)])
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "junk.mp4").write_bytes(b"x")
    (tmp_path / "README.txt").write_text("about this dataset")

    split = load_dataset(tmp_path)

    assert split.classes == ["clap", "wave"]
    names = {(s.path.name, s.label) for s in split.train + split.val}
    assert names == {(f"clip{i}.mkv", 0) for i in range(6)} | {
        (n, 1) for n in ["a.MP4", "b.mov", "c.webm"] + [f"x{i}.avi" for i in range(5)]
    }
    assert all(s.path.is_absolute() for s in split.train + split.val)
    assert split.description == "folder split by group, 20% validation, seed 0"
    assert split.warnings == []


def test_split_is_deterministic_stratified_and_seeded(tmp_path: Path) -> None:
    add_videos(tmp_path, "a", [f"{i:03d}.mp4" for i in range(20)])
    add_videos(tmp_path, "b", [f"{i:03d}.mp4" for i in range(10)])

    first = load_dataset(tmp_path, val_fraction=0.2, seed=0)
    again = load_dataset(tmp_path, val_fraction=0.2, seed=0)
    other_seed = load_dataset(tmp_path, val_fraction=0.2, seed=1)

    assert first == again
    for split in (first, other_seed):
        assert sum(s.label == 0 for s in split.val) == 4
        assert sum(s.label == 1 for s in split.val) == 2
        assert len(split.train) + len(split.val) == 30
    assert {s.path for s in first.val} != {s.path for s in other_seed.val}


def test_clips_of_one_ucf_group_always_land_on_the_same_side(tmp_path: Path) -> None:
    add_videos(tmp_path, "Jump", ucf_names("Jump", groups=10, clips=4))
    # The release spells one class two ways; both spellings are one group.
    add_videos(tmp_path, "HandstandPushups", ["v_HandStandPushups_g01_c01.avi", "v_HandstandPushups_g01_c02.avi"]
               + ucf_names("HandStandPushups", groups=6, clips=2)[2:])

    for seed in range(15):
        split = load_dataset(tmp_path, seed=seed)
        groups: dict[str, set[str]] = {}
        for path, side in sides(split).items():
            groups.setdefault(clip_group(path), set()).add(side)
        assert all(len(seen) == 1 for seen in groups.values()), seed
        assert sum(1 for s in split.val if s.label == 1) == 2 * 4  # 2 of 10 groups, 4 clips each
    assert clip_group(Path("v_HandStandPushups_g01_c01.avi")) == clip_group(Path("v_HandstandPushups_g01_c07.avi"))
    assert clip_group(Path("other.mp4")) != clip_group(Path("other2.mp4"))


def test_every_class_with_two_groups_gets_a_validation_group(tmp_path: Path) -> None:
    add_videos(tmp_path, "pair", ucf_names("pair", groups=2, clips=3))
    add_videos(tmp_path, "big", [f"{i}.mp4" for i in range(12)])
    split = load_dataset(tmp_path, val_fraction=0.01)
    val_by_class = {label: sum(s.label == label for s in split.val) for label in (0, 1)}
    assert val_by_class == {0: 1, 1: 3}  # "big" is label 0: one clip; "pair": one group of 3 clips
    assert validation_group_count(1, 0.5) == 0
    assert validation_group_count(2, 0.9) == 1
    assert validation_group_count(10, 0.25) == 3


def test_adding_clips_keeps_the_other_assignments(tmp_path: Path) -> None:
    add_videos(tmp_path, "a", ucf_names("a", groups=8, clips=2) + [f"loose{i}.mp4" for i in range(12)])
    before = sides(load_dataset(tmp_path))

    add_videos(tmp_path, "a", ["v_a_g03_c03.avi"])  # into an existing group
    after_same_group = sides(load_dataset(tmp_path))
    assert {p: s for p, s in after_same_group.items() if p in before} == before
    assert after_same_group[tmp_path / "a" / "v_a_g03_c03.avi"] == before[tmp_path / "a" / "v_a_g03_c01.avi"]

    add_videos(tmp_path, "a", ["new_clip.mp4"])  # a new group: at most one old group changes side
    after_new_group = sides(load_dataset(tmp_path))
    moved = {clip_group(p) for p, side in before.items() if after_new_group[p] != side}
    assert len(moved) <= 1


def test_train_and_test_lists_decide_the_split(tmp_path: Path) -> None:
    add_videos(tmp_path, "Jump", ["j1.avi", "j2.avi", "j3.avi", "j4.avi", "j5.avi", "extra.avi"])
    add_videos(tmp_path, "Run", ["r1.mp4", "r2.mp4", "r3.mp4", "r4.mp4", "r5.mp4"])
    (tmp_path / "train.txt").write_bytes(b"Jump/j1.avi 1\r\nJump\\j2.avi 1\r\njump/J3.AVI\r\nRun/r1.mp4 2\r\n"
                                         b"Run/r2.mp4\r\nRun/gone.mp4 2\r\n\r\n\r\n")
    (tmp_path / "test.txt").write_text("Jump/j4.avi\nJump/j5.avi\nRun/r3.mp4\nRun/r4.mp4\nRun/r5.mp4\n")

    split = load_dataset(tmp_path)

    assert split.classes == ["Jump", "Run"]
    assert [(s.path.name, s.label) for s in split.train] == [
        ("j1.avi", 0), ("j2.avi", 0), ("j3.avi", 0), ("r1.mp4", 1), ("r2.mp4", 1)]
    assert [(s.path.name, s.label) for s in split.val] == [
        ("j4.avi", 0), ("j5.avi", 0), ("r3.mp4", 1), ("r4.mp4", 1), ("r5.mp4", 1)]
    assert split.description == "folder lists train.txt / test.txt"
    assert any("train.txt" in w and "Run/gone.mp4" in w and "line 6" in w for w in split.warnings)
    assert any("1 video(s)" in w and "neither" in w for w in split.warnings)


def test_numbered_trainlist_testlist_files_follow_the_split_number(tmp_path: Path) -> None:
    add_videos(tmp_path, "a", [f"{i}.mp4" for i in range(6)])
    (tmp_path / "trainlist01.txt").write_text("a/0.mp4\na/1.mp4\na/2.mp4\na/3.mp4\n")
    (tmp_path / "testlist01.txt").write_text("a/4.mp4\na/5.mp4\n")
    (tmp_path / "trainlist02.txt").write_text("a/2.mp4\na/3.mp4\na/4.mp4\na/5.mp4\n")
    (tmp_path / "testlist02.txt").write_text("a/0.mp4\na/1.mp4\n")
    assert [s.path.name for s in load_dataset(tmp_path, split=1).val] == ["4.mp4", "5.mp4"]
    assert [s.path.name for s in load_dataset(tmp_path, split=2).val] == ["0.mp4", "1.mp4"]


def test_a_clip_listed_on_both_sides_is_an_error(tmp_path: Path) -> None:
    add_videos(tmp_path, "a", [f"{i}.mp4" for i in range(6)])
    (tmp_path / "train.txt").write_text("a/0.mp4\na/1.mp4\n")
    (tmp_path / "test.txt").write_text("a/2.mp4\na/1.mp4\n")
    with pytest.raises(DatasetError, match=r"test.txt, line 2: a/1.mp4 is already listed in train.txt"):
        load_dataset(tmp_path)


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no_such_dir: no such folder"):
        load_dataset(tmp_path / "no_such_dir")
    (tmp_path / "file.mp4").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"not a folder"):
        load_dataset(tmp_path / "file.mp4")


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no class folders"):
        load_dataset(tmp_path)
    (tmp_path / "loose.mp4").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"videos directly in it need to go into one sub-folder per class"):
        load_dataset(tmp_path)


def test_class_folder_without_videos_is_an_error(tmp_path: Path) -> None:
    add_videos(tmp_path, "full", [f"{i}.mp4" for i in range(6)])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no videos here")
    with pytest.raises(DatasetError) as error:
        load_dataset(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "empty") in message and "no videos" in message and "remove the folder" in message


def test_tiny_classes_are_warned_about(tmp_path: Path) -> None:
    add_videos(tmp_path, "plenty", [f"{i}.mp4" for i in range(8)])
    add_videos(tmp_path, "few", ["1.mp4", "2.mp4", "3.mp4"])
    add_videos(tmp_path, "single", ["only.mp4"])
    split = load_dataset(tmp_path)
    assert any("'few' has only 3 clip(s)" in w for w in split.warnings)
    assert any("'single' has only 1 clip(s)" in w for w in split.warnings)
    assert any("'single' has a single clip group" in w for w in split.warnings)
    assert not any("'plenty'" in w for w in split.warnings)
    assert Sample(tmp_path / "single" / "only.mp4", 2) in split.train


def test_ucf101_release_loaded_as_folder_points_to_the_right_kind(tmp_path: Path) -> None:
    (tmp_path / "UCF-101" / "Jump").mkdir(parents=True)
    (tmp_path / "ucfTrainTestlist").mkdir()
    with pytest.raises(DatasetError, match=r"--dataset ucf101"):
        load_dataset(tmp_path)


def test_bad_arguments_are_errors(tmp_path: Path) -> None:
    add_videos(tmp_path, "a", [f"{i}.mp4" for i in range(6)])
    with pytest.raises(DatasetError, match=r"val_fraction"):
        load_dataset(tmp_path, val_fraction=1.0)
    with pytest.raises(DatasetError, match=r"unknown dataset kind"):
        load_dataset(tmp_path, kind="kinetics")  # type: ignore[arg-type]
    assert issubclass(DatasetError, ValueError)
