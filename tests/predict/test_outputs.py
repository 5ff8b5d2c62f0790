from pathlib import Path

import pytest

from au_llm.data.manifest import read_manifest
from au_llm.predict.outputs import input_paths, prediction_files


def test_an_output_never_replaces_or_joins_an_input_even_with_overwrite(tiny_data, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    folder = tmp_path / "d"
    folder.mkdir()
    failures, other = folder / "failures.csv", folder / "in.csv"
    for manifest in (failures, other):
        read_manifest(tiny_data.casme2).iloc[:1].to_csv(manifest, index=False)
    kept = failures.read_text()
    frames = read_manifest(other)["frames_dir"].iloc[0]
    link = tmp_path / "link.csv"
    link.symlink_to(other)
    table = tmp_path / "o_per_frame.csv"
    table.write_text("x")
    sources = input_paths(model_dir, [failures, other, table])
    assert frames in {str(path) for path in sources}
    cases = [
        (folder / "p.csv", rf"failures.csv .beside --out. {failures} is the input {failures}"),
        (other, rf"--out {other} is the input {other}"),
        (link, rf"--out {link} is the input {other}"),
        (model_dir / "p.csv", rf"--out {model_dir}/p.csv lies inside the input {model_dir}"),
        (Path(frames) / "p.csv", rf"lies inside the input {frames}"),
        (tmp_path / "o.csv", rf"o_per_frame.csv .beside --out. {table} is the input {table}"),
    ]
    for out, message in cases:
        with pytest.raises(ValueError, match=message):
            prediction_files(out, overwrite=True, inputs=sources, per_frame=True)
    with pytest.raises(ValueError, match=rf"cache folder .*lies inside the input {model_dir}"):
        prediction_files(
            tmp_path / "p.csv", overwrite=True, inputs=sources, cache=model_dir / "cache"
        )
    assert prediction_files(
        tmp_path / "p.csv",
        overwrite=False,
        inputs=sources,
        per_frame=True,
        cache=tmp_path / "cache",
    )
    assert failures.read_text() == kept and other.read_text() == kept
